#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# The slide image of a region scan is the region: OpenSlide's dimensions
# times the pixel size are the W x H asked for (within a pixel), not the
# whole frames that cover it, and the analysis measures tissue inside the
# region only (at most W x H).  A scan without a region still writes the
# whole planned canvas, (cols - 1) step + frame on each axis.  A region
# scan assembled again after a restart (as after a crash while
# assembling) gives the same pixels, and `show` says the image is the
# region.
. "$(dirname "$0")/../support/daemon_env.sh"

if ! command -v openslide-show-properties >/dev/null ||
   ! command -v openslide-write-png >/dev/null; then
    skip "openslide-show-properties or openslide-write-png is not \
installed"; dtest_end; exit 0
fi
dtest_conf "[scan]
keep_tiles = yes"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }

# prop FILE NAME: one OpenSlide property of FILE.
prop() {
    openslide-show-properties "$1" | sed -n "s/^$2: '\\(.*\\)'\$/\\1/p"
}
# col SCAN EXPR: a value of scan SCAN's catalogue row.
col() {
    sqlite3 "$DB" "SELECT $2 FROM scans WHERE id = $1"
}
analysis_done() {
    [ "$(sqlite3 "$DB" "SELECT state FROM analyses WHERE scan = $1")" = \
        done ]
}

# A region inside dense tissue (0.235 of its 0.24 mm2 is tissue), whose
# covering frames hold several times that.
X=3300 Y=1950 RW=600 RH=400
slidescan scan --slide RC --stain HE --image phantom:HE:seed=12 \
    --region $X,$Y,$RW,$RH >/dev/null
slidescan scan --slide WH --stain HE --image phantom:HE:seed=12 >/dev/null
check "the region scan is done" wait_until 60 '[ "$(scan_state 1)" = done ]'
check "the whole-slide scan is done" \
    wait_until 60 '[ "$(scan_state 2)" = done ]'
check "both analyses are done" \
    wait_until 60 'analysis_done 1 && analysis_done 2'

wsi=$DATA/$(col 1 wsi_path)
w=$(prop "$wsi" openslide.level\\[0\\].width)
h=$(prop "$wsi" openslide.level\\[0\\].height)
mpp=$(prop "$wsi" openslide.mpp-x)
echo "# region $RW x $RH um: $w x $h px at $mpp um/px"
w1=$w h1=$h
within1() {
    awk -v a="$1" -v b="$2" 'BEGIN { exit !(a - b <= 1 && b - a <= 1) }'
}
check "region width in pixels is W / mpp ($w vs $RW / $mpp)" \
    within1 "$w" "$(awk -v a=$RW -v m="$mpp" 'BEGIN { print a / m }')"
check "region height in pixels is H / mpp ($h vs $RH / $mpp)" \
    within1 "$h" "$(awk -v a=$RH -v m="$mpp" 'BEGIN { print a / m }')"
check "the catalogue records the same size" \
    test "$(col 1 "width || 'x' || height")" = "${w}x$h"
check "the region spans more than one frame (the crop is not a frame)" \
    test "$(col 1 "rows * cols")" -gt 1
tissue=$(sqlite3 "$DB" "SELECT tissue_area_mm2 FROM analyses WHERE scan = 1")
echo "# region analysis: tissue $tissue mm2"
openslide-write-png "$DATA/$(col 1 wsi_path)" 0 0 0 "$w" "$h" "$T/first.png"
check "the region's tissue ($tissue mm2) is 0.8 to 1 times W x H" \
    awk -v t="$tissue" -v a="$RW" -v b="$RH" \
    'BEGIN { exit !(t >= 0.8 * a * b / 1e6 && t <= a * b / 1e6) }'

wsi=$DATA/$(col 2 wsi_path)
w=$(prop "$wsi" openslide.level\\[0\\].width)
h=$(prop "$wsi" openslide.level\\[0\\].height)
want=$(col 2 "((cols - 1) * step_x_um / pixel_um + frame_w) || ' ' || \
    ((rows - 1) * step_y_um / pixel_um + frame_h)")
echo "# whole slide: $w x $h px, planned canvas $want"
check "an unregioned scan writes the whole planned canvas" awk \
    -v w="$w" -v h="$h" -v want="$want" 'BEGIN { split(want, c, " ");
    exit !(w == int(c[1] + 0.999999) && h == int(c[2] + 0.999999)) }'
check "slidescand stops on SIGTERM" dtest_stop
sqlite3 "$DB" "UPDATE scans SET state = 'assembling' WHERE id = 1"
dtest_start || { nok "slidescand starts again"; dtest_end; exit 1; }
check "the region scan is assembled again after the restart" \
    wait_until 60 '[ "$(scan_state 1)" = done ]'
openslide-write-png "$DATA/$(col 1 wsi_path)" 0 0 0 "$w1" "$h1" \
    "$T/again.png"
check "... written a second time" \
    test "$(grep -c 'stitch: written path=.*/RC-s1\.svs ' "$LOG")" = 2
check "... to the same size ($(col 1 "width || 'x' || height"))" \
    test "$(col 1 "width || 'x' || height")" = "${w1}x$h1"
check "... and the same pixels" cmp -s "$T/first.png" "$T/again.png"
check "show states that the image is the region" eval 'slidescan show RC |
    grep -qF "region $X,$Y,$RW,$RH µm (x, y, width, height on the stage; \
the image and its analysis cover only this rectangle)"'
# An image assembled before images were cut to their region is wider:
# show says so instead.
sqlite3 "$DB" "UPDATE scans SET width = width + 700 WHERE id = 1"
check "show states when an older image holds the whole frames" \
    eval 'slidescan show RC | grep -qF "the image, assembled before \
images were cut to their region, covers the whole frames around it"'
check "slidescand stops on SIGTERM again" dtest_stop
dtest_end
