#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Interoperability of slidescan's whole-slide images: CMU-1-Small-Region is
# written with `slidescan convert` (classic TIFF and BigTIFF) and read back
# with the tools a lab uses: OpenSlide's command-line tools (vendor aperio,
# pixel size, levels, pixels), libvips (through libtiff, not OpenSlide) and
# libtiff's tiffinfo.  Colours read back must equal the source within JPEG
# error; `slidescan verify` must pass our files and refuse broken ones.
# timeout: 120
set -u

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
fail() { n=$((n + 1)); echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else fail "$1"; fi; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $1"; }

src=${SLIDESCAN_DATA:-}/wsi/CMU-1-Small-Region.svs
if [ -z "${SLIDESCAN_DATA:-}" ] || [ ! -f "$src" ]; then
    skip "../shared/data/wsi/CMU-1-Small-Region.svs is absent"
    echo "1..$n"
    exit 0
fi
for t in openslide-show-properties openslide-write-png vips tiffinfo; do
    if ! command -v $t >/dev/null; then
        skip "$t is not installed (tools/install-deps --test)"
        echo "1..$n"
        exit 0
    fi
done
dir=${TMPDIR:-/tmp}/wsi-interop.$$
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT

# PSNR in dB of the RGB bands of two same-size images, through vips.
psnr() {
    vips extract_band "$1" "$dir/pa.v" 0 --n 3 &&
        vips extract_band "$2" "$dir/pb.v" 0 --n 3 &&
        vips subtract "$dir/pa.v" "$dir/pb.v" "$dir/pd.v" &&
        vips multiply "$dir/pd.v" "$dir/pd.v" "$dir/pq.v" &&
        vips avg "$dir/pq.v" |
        awk '{ if ($1 == 0) print 999; else
               printf "%.2f\n", 10 * log(65025 / $1) / log(10) }'
}
prop() { openslide-show-properties "$1" | sed -n "s/^$2: '\(.*\)'$/\1/p"; }

out=$dir/cmu.svs
check "slidescan convert writes CMU-1-Small-Region" \
    "slidescan convert '$src' '$out' --slide-id CMU-1 --stain HE 2>/dev/null"

check "OpenSlide: vendor aperio" \
    "[ \"\$(prop '$out' openslide.vendor)\" = aperio ]"
check "OpenSlide: mpp-x and mpp-y 0.499" \
    "[ \"\$(prop '$out' openslide.mpp-x)\" = 0.499 ] &&
     [ \"\$(prop '$out' openslide.mpp-y)\" = 0.499 ]"
check "OpenSlide: objective power 20" \
    "[ \"\$(prop '$out' openslide.objective-power)\" = 20 ]"
check "OpenSlide: 4 levels, level 1 is 1110x1484" \
    "[ \"\$(prop '$out' openslide.level-count)\" = 4 ] &&
     [ \"\$(prop '$out' 'openslide.level\[1\].width')\" = 1110 ] &&
     [ \"\$(prop '$out' 'openslide.level\[1\].height')\" = 1484 ]"
check "OpenSlide: the slide id survives" \
    "[ \"\$(prop '$out' 'aperio.Slide ID')\" = CMU-1 ]"

check "openslide-write-png reads level 0 of ours and of the source" \
    "openslide-write-png '$out' 0 0 0 2220 2967 '$dir/ours.png' &&
     openslide-write-png '$src' 0 0 0 2220 2967 '$dir/src.png'"
p=$(psnr "$dir/ours.png" "$dir/src.png")
echo "# colours through OpenSlide: PSNR $p dB against the source"
check "colours read back equal the source within JPEG error (>= 40 dB)" \
    "awk -v p='$p' 'BEGIN { exit !(p >= 40) }'"

check "vips reads level 0 through libtiff" \
    "vips tiffload '$out' '$dir/tl.v' --page 0 2>/dev/null &&
     [ \"\$(vipsheader -f width '$dir/tl.v')\" = 2220 ] &&
     [ \"\$(vipsheader -f bands '$dir/tl.v')\" = 3 ]"
p=$(psnr "$dir/tl.v" "$dir/ours.png")
echo "# vips (libtiff) against OpenSlide: PSNR $p dB"
check "vips and OpenSlide decode identical pixels" "[ '$p' = 999 ]"
check "vips reads the reduced level (page 2) as 1110x1484" \
    "vips tiffload '$out' '$dir/l1.v' --page 2 2>/dev/null &&
     [ \"\$(vipsheader -f width '$dir/l1.v')\" = 1110 ] &&
     [ \"\$(vipsheader -f height '$dir/l1.v')\" = 1484 ]"
check "vips opens it through OpenSlide too" \
    "[ \"\$(vipsheader -f width '$out' 2>/dev/null)\" = 2220 ]"

check "tiffinfo reads every directory and tile without a complaint" \
    "tiffinfo -D '$out' >/dev/null 2>'$dir/ti.err' && [ ! -s '$dir/ti.err' ]"
check "tiffinfo sees 7 directories (4 levels, thumbnail, label, macro)" \
    "[ \"\$(tiffinfo '$out' 2>/dev/null | grep -c '^TIFF Directory')\" = 7 ]"
check "resolution on level 0 is 20040 px/cm" \
    "tiffinfo -0 '$out' 2>/dev/null |
     grep -q 'Resolution: 20040.1, 20040.1 pixels/cm'"

big=$dir/big.svs
check "slidescan convert --bigtiff writes a BigTIFF" \
    "slidescan convert '$src' '$big' --bigtiff 2>/dev/null &&
     [ \"\$(head -c 4 '$big' | od -An -tx1 | tr -d ' ')\" = 49492b00 ]"
check "the BigTIFF is aperio with mpp 0.499 for OpenSlide" \
    "[ \"\$(prop '$big' openslide.vendor)\" = aperio ] &&
     [ \"\$(prop '$big' openslide.mpp-x)\" = 0.499 ]"
check "vips and tiffinfo read the BigTIFF" \
    "vips tiffload '$big' '$dir/bt.v' --page 0 2>/dev/null &&
     tiffinfo -D '$big' >/dev/null 2>&1"

check "slidescan verify passes our file at 0.499 µm/px" \
    "slidescan verify '$out' --mpp 0.499 >/dev/null"
check "slidescan verify passes the BigTIFF" \
    "slidescan verify '$big' --mpp 0.499 >/dev/null"
slidescan verify "$out" --mpp 0.25 >"$dir/v.out" 2>&1
rc=$?
check "slidescan verify refuses a wrong pixel size (exit 1, named)" \
    "[ $rc = 1 ] &&
     grep -q 'pixel size is 0.499 µm/px, expected 0.25' '$dir/v.out'"
slidescan verify "$SLIDESCAN_DATA/wsi/edge_cases/broken.svs" >"$dir/v.out" 2>&1
rc=$?
check "slidescan verify refuses a text file named .svs (exit 1)" \
    "[ $rc = 1 ] && grep -q 'not a readable TIFF' '$dir/v.out'"
slidescan verify "$dir/missing.svs" >/dev/null 2>&1
rc=$?
check "slidescan verify on a missing file exits 5" "[ $rc = 5 ]"

# Another scanner's Aperio file states its pixel size only as MPP in the
# description: verify accepts that and says the file is not ours; our own
# files still need correct resolution tags.
slidescan verify "$src" >"$dir/v.out" 2>&1
rc=$?
want="ok   pixel size: 0.499 µm/px from the description's MPP; not a"
want="$want slidescan WSI (ImageDescription from \"Aperio Image Library"
want="$want v11.2.1\"), so resolution tags are not required"
check "slidescan verify passes CMU-1-Small-Region as a foreign file ($rc)" \
    "[ $rc = 0 ] && grep -qF \"\$want\" '$dir/v.out'"
cp "$out" "$dir/inch.svs"
tiffset -d 0 -s 296 2 "$dir/inch.svs" >/dev/null 2>&1
slidescan verify "$dir/inch.svs" >"$dir/v.out" 2>&1
rc=$?
check "slidescan verify still wants our own files' resolution in cm ($rc)" \
    "[ $rc = 1 ] && grep -q 'FAIL level 0: resolution .* per inch' '$dir/v.out'"

# convert never writes over its own input: same name, IN@MPP, a symbolic
# link or a hard link to IN as OUT are refused and IN keeps its bytes.
sum=$(md5sum <"$out")
ln -s "$out" "$dir/sym.svs"
ln "$out" "$dir/hard.svs"
same="is the same file as IN"
for pair in "$out|$out" "$out@0.499|$out" "$out|$dir/sym.svs" \
            "$dir/hard.svs|$out" "$dir/sym.svs|$dir/hard.svs"; do
    a=${pair%%|*} b=${pair#*|}
    slidescan convert "$a" "$b" >/dev/null 2>"$dir/c.err"
    rc=$?
    check "convert $(basename "$a") $(basename "$b") is refused (exit $rc)" \
        "[ $rc = 2 ] && grep -qF \"OUT '$b' $same\" '$dir/c.err' &&
         grep -qF 'lossy re-encode of itself' '$dir/c.err'"
done
check "the refused conversions left IN untouched" \
    "[ \"\$(md5sum <'$out')\" = '$sum' ]"

echo "1..$n"
