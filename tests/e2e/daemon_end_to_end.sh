#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 240
#
# The whole job through the real daemon and client: a slide is "scanned"
# on the simulated microscope at 20x (0.5 µm per pixel, the objective's
# pixel size), captured, stitched into a pyramidal WSI and analysed.  Then:
#   - OpenSlide reads the WSI as Aperio with mpp 0.500 ± 0.001 and at least
#     3 levels, and the WSI validator accepts it;
#   - level-0 PSNR against the simulator's ideal image of the same stage
#     area (what a perfect scanner records after flat-field), rendered at
#     the mosaic's own sub-pixel offset, is ≥ 30 dB over the scanned area
#     (tests/helpers/daemon_psnr.c), and at most 1.5 dB below the PSNR of
#     the stored tiles themselves;
#   - the catalogue row is complete (sqlite3 CLI) and its SHA-256 matches;
#   - the overlay exists, OpenSlide opens it, and the areas are recorded;
#   - for CMU-1, the scan's tissue area is within 10 % of what `slidescan
#     analyse` measures on the original file: the file's own glass must
#     image as glass, not as faint tissue.
# The slide is ../shared/data/wsi/CMU-1-Small-Region.svs; without the
# shared data a phantom H&E slide is scanned instead (and a SKIP line says
# the CMU part did not run).
. "$(dirname "$0")/../support/daemon_env.sh"

CMU=${SLIDESCAN_DATA:-$ROOT/../shared/data}/wsi/CMU-1-Small-Region.svs
# PSPEC: the slide as the daemon places it (a file gets its stain, a
# phantom carries its own), for the PSNR helper's simulator.
if [ -f "$CMU" ]; then
    SLIDE=CMU-1 SPEC=$CMU PSPEC=$CMU:stain=HE:id=CMU-1
    ok "scanning $CMU"
else
    SLIDE=PH-1 SPEC=phantom:HE:seed=11:w_mm=1.5:h_mm=1.2
    PSPEC=$SPEC:id=PH-1
    skip "shared data absent: CMU-1-Small-Region.svs not scanned; a phantom" \
         "H&E slide is scanned instead"
fi

# 20x (0.5 µm/px) with the simulator's own 2048 × 1536 sensor (set here
# because daemon_env.sh makes the other tests' sensor smaller): the slide
# takes 3 tiles in one column, so its focus points lie on one line.
SIMKEYS="time_scale=0 sensor_w=2048 sensor_h=1536"
# The calibration averages the product's 8 frames (daemon_env.sh takes 2
# for speed; the flat's noise is imprinted on every tile, 0.4 dB of PSNR
# here), and the tiles are kept so that the PSNR helper can also measure
# them before stitching.
dtest_conf "[simulator]
$(tr ' ' '\n' <<<"$SIMKEYS" | sed 's/=/ = /')
[scan]
calib_frames = 8
keep_tiles = true"

# The PSNR helper (tests/helpers/daemon_psnr.c), built by `make tests`.
PSNR=$BUILD/tests/helpers/daemon_psnr
check "PSNR helper is built ($PSNR)" test -x "$PSNR"

dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
t0=$SECONDS
slidescan scan --slide "$SLIDE" --stain HE --image "$SPEC" --wait \
    >"$T/scan.out" 2>&1
rc=$?
check "scan --wait ends with the scan and its analysis done" test $rc = 0
echo "# scan, assembly and analysis took $((SECONDS - t0)) s"
sed 's/^/#   /' "$T/scan.out" | tail -4

q() { sqlite3 "$DB" "$1"; }
WSI=$DATA/$(q "SELECT wsi_path FROM slides WHERE id = '$SLIDE'")
props=$(openslide-show-properties "$WSI" 2>&1)
check "OpenSlide reads the WSI as Aperio" \
    grep -q "openslide.vendor: 'aperio'" <<<"$props"
mpp=$(sed -n "s/^openslide.mpp-x: '\(.*\)'/\1/p" <<<"$props")
check "mpp $mpp is the 20x objective's 0.500 ± 0.001 µm/px" \
    awk -v m="${mpp:-0}" 'BEGIN { exit !(m >= 0.499 && m <= 0.501) }'
levels=$(sed -n "s/^openslide.level-count: '\(.*\)'/\1/p" <<<"$props")
check "at least 3 levels ($levels)" test "${levels:-0}" -ge 3
check "the WSI validator accepts it" slidescan verify "$WSI" --mpp 0.5

if [ -x "$PSNR" ]; then
    # shellcheck disable=SC2086
    res=$("$PSNR" "$DATA" 1 "$PSPEC" $SIMKEYS 2>&1)
    sed 's/^/# /' <<<"$res"
    db=$(sed -n 's/.*psnr_db=\([0-9.]*\).*/\1/p' <<<"$res")
    check "level-0 PSNR ${db:-?} dB against the ideal image is >= 30 dB" \
        awk -v p="${db:-0}" 'BEGIN { exit !(p >= 30) }'
    # Stitching, blending and the WSI's JPEG q90 cost 0.8 dB against the
    # stored tiles here; a misplaced tile or a blend seam costs more.
    tdb=$(sed -n 's/.*tiles_db=\([0-9.]*\).*/\1/p' <<<"$res")
    check "the WSI loses at most 1.5 dB against its own tiles (${tdb:-?} dB)" \
        awk -v p="${db:-0}" -v t="${tdb:-99}" 'BEGIN { exit !(p >= t - 1.5) }'
else
    nok "level-0 PSNR (no helper)"
fi

row=$(q "SELECT s.state, s.tiles_done = s.tiles_total AND s.tiles_total > \
    0, s.started IS NOT NULL AND s.finished IS NOT NULL, s.profile IS NOT \
    NULL, s.calib IS NOT NULL, s.virtual_ms > 0, s.rows > 0, \
    s.focus_model IS NOT NULL, sl.wsi_scan = s.id, sl.mpp = s.mpp, \
    sl.width > 0 AND sl.height > 0, length(sl.checksum) = 64, \
    s.wsi_bytes > 0 FROM scans s JOIN slides sl ON sl.id = s.slide WHERE \
    s.id = 1")
check "catalogue: scan and slide rows complete ($row)" \
    test "$row" = "done|1|1|1|1|1|1|1|1|1|1|1|1"
check "catalogue: every tile captured with its checksum and position" \
    test "$(q "SELECT COUNT(*) FROM tiles WHERE scan = 1 AND (state != \
    'captured' OR length(checksum) != 64 OR rx_um IS NULL)")" = 0
check "catalogue: focus points and the calibration are recorded" \
    test "$(q "SELECT (SELECT COUNT(*) FROM focus_points WHERE scan = 1) \
    > 0 AND (SELECT COUNT(*) FROM calibrations) > 0")" = 1
sum=$(q "SELECT checksum FROM slides WHERE id = '$SLIDE'")
check "catalogue: the SHA-256 matches the file" \
    test -f "$WSI" -a -n "$sum" -a "$(sha256sum "$WSI" | cut -d' ' -f1)" = \
    "$sum"
check "catalogue: the scan request is in the audit trail" \
    test "$(q "SELECT COUNT(*) FROM events WHERE action = 'scan' AND \
    scan = 1 AND uid = $(id -u)")" = 1
check "catalogue: integrity_check ok" test "$(q "PRAGMA integrity_check")" \
    = ok

an=$(q "SELECT state || '|' || out_dir || '|' || overlay_path FROM \
    analyses WHERE scan = 1")
IFS='|' read -r astate adir aoverlay <<<"$an"
check "analysis done" test "$astate" = done
check "overlay written and OpenSlide opens it" \
    openslide-show-properties "$DATA/$adir/$aoverlay"
areas=$(q "SELECT tumor_area_mm2 + stroma_area_mm2 > 0, tissue_area_mm2 > \
    0, tissue_area_mm2 < 3 FROM analyses WHERE scan = 1")
check "tumour, stroma and tissue areas recorded and plausible ($areas)" \
    test "$areas" = "1|1|1"
if [ "$SLIDE" = CMU-1 ]; then
    slidescan analyse "$CMU" --out "$T/orig" >/dev/null 2>&1
    orig=$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["tissue_area_mm2"])' \
        "$T/orig/results.json" 2>/dev/null)
    scanned=$(q "SELECT tissue_area_mm2 FROM analyses WHERE scan = 1")
    echo "# tissue: scan ${scanned:-?} mm², original file ${orig:-?} mm²"
    check "scan's tissue area ${scanned:-?} mm² within 10 % of the \
original's ${orig:-?} mm²" awk -v s="${scanned:-0}" -v o="${orig:-0}" \
        'BEGIN { exit !(o > 0 && s >= 0.9 * o && s <= 1.1 * o) }'
else
    skip "shared data absent: tissue area against the original not compared"
fi
out=$(slidescan show "$SLIDE")
check "show names the image, its checksum and the analysis" \
    grep -q "sha256 $(q "SELECT checksum FROM slides")" <<<"$out"

dtest_stop
check "the daemon stops cleanly" test $? = 0
dtest_end
