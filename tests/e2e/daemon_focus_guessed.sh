#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 60
#
# A focus point on blank glass (field case F1 on a real slide): on the
# kidney slide at half resolution the focus map's point at tile 0 lies on
# glass and finds no focus within one sweep; tile 0 is then taken at the
# z the surface predicts from the other points, inside the configured z
# travel (narrowed here to -30..30 µm), and is recorded and shown as
# focus-guessed, while the tiles whose points found focus are not.
. "$(dirname "$0")/../support/daemon_env.sh"

KID=${SLIDESCAN_DATA:-$ROOT/../shared/data}/wsi/edge_cases/kidney-48-5.tif
if [ ! -r "$KID" ]; then
    skip "$KID is absent"; dtest_end; exit 0
fi
dtest_conf '[simulator]
z_min_um = -30
z_max_um = 30'
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
q() { sqlite3 "$DB" "$1"; }

slidescan scan --slide KID --stain HE --image "$KID@2" --wait \
    >"$T/kid.out" 2>&1
check "the kidney scan completes" test "$(scan_state 1)" = done
check "the focus point at tile 0 found no focus" grep -q \
    "focus: no focus tile=0 " "$LOG"
check "its point is stored as without focus" test "$(q "SELECT ok FROM \
focus_points p JOIN tiles t ON t.scan = p.scan AND t.idx = 0 WHERE \
p.scan = 1 AND abs(p.x_um - t.x_um - 0.5 * (SELECT frame_w * pixel_um \
FROM scans WHERE id = 1)) < 1")" = 0
check "tile 0 carries the focus-guessed flag (8) in the catalogue" \
    test "$(q "SELECT flags & 8 FROM tiles WHERE scan = 1 AND idx = 0")" = 8
check "no other tile carries it" test "$(q "SELECT COUNT(*) FROM tiles \
WHERE scan = 1 AND idx != 0 AND flags & 8")" = 0
check "tile 0 was taken at the predicted z" test "$(q "SELECT \
abs(rz_um - z_pred_um) < 0.5 FROM tiles WHERE scan = 1 AND idx = 0")" = 1
check "every tile's z lies within the z travel -30..30 um" test "$(q \
"SELECT COUNT(*) FROM tiles WHERE scan = 1 AND (rz_um < -30 OR rz_um > 30 \
OR z_pred_um < -30 OR z_pred_um > 30)")" = 0
slidescan show KID >"$T/show.out" 2>&1
check "show lists tile 0 as focus-guessed" grep -Eq \
    '^ +0 +[0-9]+ +[0-9]+ captured .*focus-guessed' "$T/show.out"
slidescan show KID --tiles --json >"$T/tiles.json" 2>&1
check "show --tiles --json gives tile 0 flags 8" test "$(jq -r \
    '.. | objects | select(has("idx") and has("flags")) |
     select((.idx | tostring) == "0") | .flags' "$T/tiles.json" |
    head -1)" = 8

dtest_stop
check "the daemon stops cleanly" test $? = 0
dtest_end
