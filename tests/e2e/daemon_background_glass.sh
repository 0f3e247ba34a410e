#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# Grid cells a scan never captured (no tissue there) are filled in the
# stitched image with the glass colour that scan captured, so the slide
# shows no rectangles: per channel, the colour at the centre of an
# uncaptured cell is within 2 levels of the median of the captured tile
# with the least tissue.  A phantom scan takes the H&E calibration; the
# kidney slide (real data) then reuses it, and its glass reads about 250
# after that flat-field while the calibration's blank spot read 240: a
# fill taken from the calibration would show 240 against 250.
. "$(dirname "$0")/../support/daemon_env.sh"

if ! command -v vips >/dev/null || ! command -v openslide-write-png \
    >/dev/null; then
    skip "vips or openslide-write-png is not installed"; dtest_end; exit 0
fi
dtest_conf
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
q() { sqlite3 "$DB" "$1"; }

# rgb_at WSI X Y: the level-0 pixel at (X, Y) as "R G B".
rgb_at() {
    openslide-write-png "$1" "$2" "$3" 0 1 1 "$T/px.png" &&
        vips getpoint "$T/px.png" 0 0 | awk '{ print $1, $2, $3 }'
}

# median_rgb WSI X Y W H: per-channel medians of a level-0 region.
median_rgb() {
    local b out=
    openslide-write-png "$1" "$2" "$3" 0 "$4" "$5" "$T/reg.png" || return 1
    for b in 0 1 2; do
        vips extract_band "$T/reg.png" "$T/b.v" "$b" || return 1
        out="$out $(vips percent "$T/b.v" 50)"
    done
    echo $out
}

# within A B: every channel of "R G B" A is within 2 of B's.
within() {
    local a b i
    read -ra a <<<"$1"
    read -ra b <<<"$2"
    [ ${#a[@]} = 3 ] && [ ${#b[@]} = 3 ] || return 1
    for i in 0 1 2; do
        [ $((a[i] - b[i])) -le 2 ] && [ $((b[i] - a[i])) -le 2 ] || return 1
    done
}

# check_fill SCAN NAME: the fill of SCAN's uncaptured cells against its
# captured glass.
check_fill() {
    local s=$1 name=$2 wsi rows cols step_x step_y fw fh r c fill glass
    wsi=$DATA/$(q "SELECT wsi_path FROM scans WHERE id = $s")
    IFS='|' read -r rows cols step_x step_y fw fh <<<"$(q "SELECT rows, \
        cols, CAST(step_x_um / pixel_um AS INT), CAST(step_y_um / pixel_um \
        AS INT), frame_w, frame_h FROM scans WHERE id = $s")"
    # The first cell in grid order without a captured tile.
    IFS='|' read -r r c <<<"$(q "WITH RECURSIVE n(i) AS (SELECT 0 UNION \
        ALL SELECT i + 1 FROM n WHERE i + 1 < $rows * $cols) SELECT i / \
        $cols, i % $cols FROM n WHERE NOT EXISTS (SELECT 1 FROM tiles \
        WHERE scan = $s AND state = 'captured' AND row = i / $cols AND \
        col = i % $cols) ORDER BY i LIMIT 1")"
    if [ -z "$r" ]; then
        nok "$name: the scan left a cell uncaptured"
        return
    fi
    fill=$(rgb_at "$wsi" $((c * step_x + fw / 2)) $((r * step_y + fh / 2)))
    # The captured tile with the least tissue, its planned frame less the
    # overlaps: mostly glass, so its per-channel median is glass.
    IFS='|' read -r r c <<<"$(q "SELECT row, col FROM tiles WHERE scan = \
        $s AND state = 'captured' ORDER BY tissue_frac, idx LIMIT 1")"
    glass=$(median_rgb "$wsi" $((c * step_x + fw / 10)) \
        $((r * step_y + fh / 10)) $((fw * 8 / 10)) $((fh * 8 / 10)))
    check "$name: uncaptured cell ($fill) within 2 of the captured \
glass ($glass) per channel" within "$fill" "$glass"
}

slidescan scan --slide PH --stain HE --image phantom:HE:w_mm=3:h_mm=2.5 \
    --wait >"$T/ph.out" 2>&1
check "a phantom scan completes" test "$(scan_state 1)" = done
check_fill 1 "phantom"

KID=${SLIDESCAN_DATA:-$ROOT/../shared/data}/wsi/edge_cases/kidney-48-5.tif
if [ -r "$KID" ]; then
    slidescan scan --slide KID --stain HE --image "$KID@4" --wait \
        >"$T/kid.out" 2>&1
    check "the kidney scan completes" test "$(scan_state 2)" = done
    check "it reused the phantom's H&E calibration" test "$(q "SELECT \
        calib FROM scans WHERE id = 2")" = "$(q "SELECT calib FROM scans \
        WHERE id = 1")"
    check_fill 2 "kidney after the phantom's calibration"
else
    skip "$KID is absent"
fi

dtest_stop
check "the daemon stops cleanly" test $? = 0
dtest_end
