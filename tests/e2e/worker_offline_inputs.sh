#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 60
#
# Inputs of eval and annotations: a --pred or --truth file, a GeoJSON or
# a --slide that does not exist exits 5 (not found) with "FILE: No such
# file or directory", like verify, analyse and convert; text that is not
# JSON stays a failure (1).  annotations refuses an --mpp whose label
# raster would pass 2^28 px (exit 2, the size and the limit named, the
# smallest --mpp that fits given) before allocating anything, one so
# coarse that a pixel is larger than the slide (the largest --mpp given),
# and a --mpp that is not a positive number.  Polygon coordinates far
# beyond what an int holds are clipped to the raster, not lost.  Each
# feature left out is reported with its cause; a file with no usable
# feature fails (1) and writes nothing.  `slidescan analyse --threads` and
# `slidescan-worker analyse --threads` take only a whole number in 0..64
# (0: one per CPU); anything else exits 2 naming the option and the value
# as typed, before the slide is opened.  `verify --mpp inf` and a `watch
# --count` beyond a long are refused (exit 2) too.  Without the shipped
# model, analyse warns that the classical baseline runs instead.
set -u

. "$(dirname "$0")/../support/tap.sh"

tmp=${TMPDIR:-/tmp}/inputs.$$
data=${SLIDESCAN_DATA:-}
slide=$data/wsi/CMU-1-Small-Region.svs
gone=$tmp/gone
mkdir -p "$tmp"

# expect CODE TEXT CMD...: CMD exits CODE and says TEXT on stderr.
expect() {
    local code=$1 text=$2
    shift 2
    "$@" >/dev/null 2>"$tmp/err"
    local rc=$?
    echo "# ${*:1:2} ...: exit $rc: $(cat "$tmp/err")"
    check "${*:1:2} ... exits $code" [ $rc = "$code" ]
    check "... saying '$text'" grep -qF -- "$text" "$tmp/err"
}

cat >"$tmp/t.geojson" <<'JSON'
{"type": "FeatureCollection", "features": [{"type": "Feature",
 "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]},
 "properties": {"classification": {"name": "Tumor"}}}]}
JSON
echo 'not json' >"$tmp/bad.geojson"
python3 -c 'import struct, sys, zlib
def chunk(t, d):
    return (struct.pack(">I", len(d)) + t + d +
            struct.pack(">I", zlib.crc32(t + d) & 0xffffffff))
raw = (b"\0" + bytes([1]) * 10) * 10
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" +
    chunk(b"IHDR", struct.pack(">IIBBBBB", 10, 10, 8, 0, 0, 0, 0)) +
    chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))' \
    "$tmp/pred.png"

# --- analyse and the worker: --threads -------------------------------------
want="--threads wants a whole number of threads in 0..64 (0: one per CPU)"
for t in abc -1 65 "" 4x " 2" +3 1e1 99999999999999999999; do
    expect 2 "slidescan analyse: $want, not '$t'" \
        slidescan analyse "$gone/s.svs" --out "$tmp/t" --threads "$t"
    expect 2 "slidescan-worker: $want, not '$t'" \
        slidescan-worker analyse --wsi "$gone/s.svs" --stain HE \
        --out "$tmp/t" --threads "$t"
done
check "... and no output directory is made" [ ! -e "$tmp/t" ]
# The bounds are taken: the run goes on to the slide, which is missing.
for t in 0 64; do
    expect 5 "$gone/s.svs: No such file or directory" \
        slidescan analyse "$gone/s.svs" --out "$tmp/t" --threads "$t"
    slidescan-worker analyse --wsi "$gone/s.svs" --stain HE \
        --out "$tmp/t" --threads "$t" >/dev/null 2>"$tmp/err"
    echo "# worker --threads $t: exit $?: $(cat "$tmp/err")"
    check "worker --threads $t is taken (the error is the missing slide)" \
        grep -qF "$gone/s.svs" "$tmp/err"
done
expect 2 "slidescan verify: --mpp 'inf' is not a positive number" \
    slidescan verify "$gone/s.svs" --mpp inf
expect 2 "--count: '99999999999999999999' is outside 1..9223372036854775807" \
    slidescan watch --count 99999999999999999999

# --- eval -----------------------------------------------------------------
expect 5 "$gone/t.geojson: No such file or directory" \
    slidescan eval --pred "$tmp/pred.png" --truth "$gone/t.geojson"
check "... and not as a JSON error" \
    bash -c '! grep -q "not JSON" "$1"' _ "$tmp/err"
expect 5 "$gone/t.png: No such file or directory" \
    slidescan eval --pred "$tmp/pred.png" --truth "$gone/t.png"
expect 5 "$gone/p.png: No such file or directory" \
    slidescan eval --pred "$gone/p.png" --truth "$tmp/t.geojson"
expect 1 "$tmp/bad.geojson: not JSON" \
    slidescan eval --pred "$tmp/pred.png" --truth "$tmp/bad.geojson"
slidescan eval --pred "$tmp/pred.png" --truth "$tmp/t.geojson" >/dev/null
check "eval of files that exist exits 0" [ $? = 0 ]
# A Tumor square from -3e9 to 3e9 level-0 px covers the 10 x 10
# prediction: all 100 pixels are tumour truth, none left unlabelled.
cat >"$tmp/huge.geojson" <<'JSON'
{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
  [[-3e9, -3e9], [3e9, -3e9], [3e9, 3e9], [-3e9, 3e9], [-3e9, -3e9]]]},
 "properties": {"classification": {"name": "Tumor"}}}
JSON
slidescan eval --pred "$tmp/pred.png" --truth "$tmp/huge.geojson" \
    --json "$tmp/huge.json" >/dev/null 2>&1
check "a truth square from -3e9 to 3e9 px labels all 100 px tumour" \
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(d["classes"]["tumor"]["tp"] != 100)' "$tmp/huge.json"

# Without the shipped model (no $SLIDESCAN_MODEL, $SLIDESCAN_ROOT pointing
# at nothing, the programs copied where no models/ lies beside them), the
# classical baseline runs, and both programs say so on stderr, naming
# where the model was looked for.
mkdir -p "$tmp/nomodel/a/bin"
cp "$(command -v slidescan)" "$(command -v slidescan-worker)" \
    "$tmp/nomodel/a/bin/"
slidescan phantom --out "$tmp/ph.tif" --size-mm 1x1 --seed 3 \
    >/dev/null 2>&1
for prog in "slidescan analyse $tmp/ph.tif --out" \
            "slidescan-worker analyse --wsi $tmp/ph.tif --out"; do
    set -- $prog
    o=$tmp/nomodel/out.$#
    SLIDESCAN_MODEL= SLIDESCAN_ROOT=$tmp/nomodel/none \
        "$tmp/nomodel/a/bin/$1" "${@:2}" "$o" >/dev/null 2>"$tmp/err"
    rc=$?
    check "$1 without the default model: exit 0 ($rc), classical" \
        jtrue "$o/results.json" 'd["model"] == "classical-baseline-1"'
    check "... warns, naming where it looked ($(grep -c warn "$tmp/err") \
line)" [ "$(grep -c "default model default.safetensors not found (looked \
in \$SLIDESCAN_MODEL (unset), $tmp/nomodel/none/models/default.safetensors, \
$tmp/nomodel/a/bin/../../models/default.safetensors, .*); using the \
classical baseline instead$" "$tmp/err")" = 1 ]
done
slidescan analyse "$tmp/ph.tif" --out "$tmp/withmodel" >/dev/null \
    2>"$tmp/err"
check "with the model found: no such warning" \
    [ "$(grep -c "not found" "$tmp/err")" = 0 ]

if [ -z "$data" ] || [ ! -f "$slide" ]; then
    skip "shared data absent: no slide for annotations"
    rm -rf "$tmp"
    echo "1..$n"
    exit 0
fi

# --- annotations: missing inputs --------------------------------------------
expect 5 "$gone/t.geojson: No such file or directory" \
    slidescan annotations "$gone/t.geojson" --slide "$slide" \
    --out "$tmp/a1"
check "... and writes no output directory" [ ! -e "$tmp/a1" ]
expect 5 "$gone/s.svs: No such file or directory" \
    slidescan annotations "$tmp/t.geojson" --slide "$gone/s.svs" \
    --out "$tmp/a2"
expect 1 "$tmp/bad.geojson: not JSON" \
    slidescan annotations "$tmp/bad.geojson" --slide "$slide" \
    --out "$tmp/a3"

# --- annotations: features left out ----------------------------------------
# A degenerate polygon without a class is the file's only feature: nothing
# usable remains, so the import fails (1) naming the file and the cause,
# and writes nothing.
cat >"$tmp/deg.geojson" <<'JSON'
{"type": "FeatureCollection", "features": [{"type": "Feature",
 "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]},
 "properties": {}}]}
JSON
expect 1 "slidescan annotations: skipped $tmp/deg.geojson: feature 0: no \
classification (ROI, Tumor or Stroma)" \
    slidescan annotations "$tmp/deg.geojson" --slide "$slide" \
    --out "$tmp/a9"
check "... then fails naming the file" grep -qF "$tmp/deg.geojson: no \
usable feature (a ROI, Tumor or Stroma polygon): 1 skipped" "$tmp/err"
check "... writing nothing" [ ! -e "$tmp/a9" ]
# Beside a usable feature, each one left out is reported with its cause.
cat >"$tmp/mixed.geojson" <<'JSON'
{"type": "FeatureCollection", "features": [{"type": "Feature",
 "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]},
 "properties": {"classification": {"name": "Tumor"}}},
 {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]},
  "properties": {"classification": {"name": "Stroma"}}},
 {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [10, 0], [10, 10], [0, 0]]]},
  "properties": {"classification": "Necrosis"}}]}
JSON
slidescan annotations "$tmp/mixed.geojson" --slide "$slide" \
    --out "$tmp/a10" --mpp 4 >"$tmp/out" 2>"$tmp/err"
check "one usable feature of three is imported (exit $?)" \
    grep -qF "annotators 1, features 1, skipped 2" "$tmp/out"
check "... the Point is reported as without area" grep -qF "skipped \
$tmp/mixed.geojson: feature 1: class Stroma, but a Point geometry has no \
area" "$tmp/err"
check "... the Necrosis polygon by its class" grep -qF "skipped \
$tmp/mixed.geojson: feature 2: class 'Necrosis' is not ROI, Tumor or \
Stroma" "$tmp/err"

# A polygon without area (collinear points) is no usable feature either:
# with an "Other" class, a LineString and an unclassified feature beside
# it nothing usable remains, so the import fails and writes nothing.
cat >"$tmp/flat.geojson" <<'JSON'
{"type": "FeatureCollection", "features": [{"type": "Feature",
 "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [10, 0], [20, 0], [0, 0]]]},
 "properties": {"classification": {"name": "Stroma"}}},
 {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [10, 0], [10, 10], [0, 0]]]},
  "properties": {"classification": {"name": "Other"}}},
 {"type": "Feature", "geometry": {"type": "LineString",
  "coordinates": [[0, 0], [50, 50]]},
  "properties": {"classification": {"name": "Tumor"}}},
 {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [10, 0], [10, 10], [0, 0]]]}, "properties": {}}]}
JSON
expect 1 "slidescan annotations: skipped $tmp/flat.geojson: feature 0: \
class Stroma, but no area (0 level-0 px², one raster pixel is 16.1)" \
    slidescan annotations "$tmp/flat.geojson" --slide "$slide" \
    --out "$tmp/a11"
check "... then fails naming the file, 4 skipped" grep -qF "$tmp/flat.geojson: \
no usable feature (a ROI, Tumor or Stroma polygon): 4 skipped" "$tmp/err"
check "... writing nothing" [ ! -e "$tmp/a11" ]
# A polygon smaller than one raster pixel at --mpp labels no pixel: left
# out for "no area" beside a usable one; at a finer --mpp it is kept.
cat >"$tmp/tiny.geojson" <<'JSON'
{"type": "FeatureCollection", "features": [{"type": "Feature",
 "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]]]},
 "properties": {"classification": {"name": "Tumor"}}},
 {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
   [[100, 100], [103, 100], [103, 103], [100, 103], [100, 100]]]},
  "properties": {"classification": {"name": "Stroma"}}}]}
JSON
slidescan annotations "$tmp/tiny.geojson" --slide "$slide" \
    --out "$tmp/a12" --mpp 2 >"$tmp/out" 2>"$tmp/err"
rc=$?
check "a 9 px² polygon at --mpp 2 (16.1 px² per pixel) is left out (exit \
$rc)" grep -qF "annotators 1, features 1, skipped 1" "$tmp/out"
check "... for having no area" grep -qF "skipped $tmp/tiny.geojson: \
feature 1: class Stroma, but no area (9 level-0 px², one raster pixel is \
16.1)" "$tmp/err"
slidescan annotations "$tmp/tiny.geojson" --slide "$slide" \
    --out "$tmp/a13" --mpp 0.499 >"$tmp/out" 2>"$tmp/err"
check "... at --mpp 0.499 (1 px² per pixel) it is kept (exit $?)" \
    grep -qF "annotators 1, features 2, skipped 0" "$tmp/out"

# --- annotations: --mpp ---------------------------------------------------
# CMU-1-Small-Region is 2220 x 2967 px at 0.499 µm/px: at 0.0001 µm/px
# the raster would be 11077800 x 14805330 px.
expect 2 "11077800x14805330 px label raster" \
    slidescan annotations "$tmp/t.geojson" --slide "$slide" \
    --out "$tmp/a4" --mpp 0.0001
check "... naming the limit" grep -qF "limit of 268435456 px" "$tmp/err"
check "... and the smallest --mpp that fits, 0.079" \
    grep -qF "give --mpp 0.079 or more" "$tmp/err"
check "... writing nothing" [ ! -e "$tmp/a4" ]
slidescan annotations "$tmp/t.geojson" --slide "$slide" --out "$tmp/a5" \
    --mpp 4 >/dev/null 2>"$tmp/err"
rc=$?
check "--mpp 4 exits 0" [ $rc = 0 ]
check "... writing labels.png" [ -s "$tmp/a5/labels.png" ]
for bad in 0 -1 abc nan inf; do
    expect 2 "--mpp wants a positive pixel size in µm, not '$bad'" \
        slidescan annotations "$tmp/t.geojson" --slide "$slide" \
        --out "$tmp/a6" --mpp "$bad"
done
for big in 1e308 1e6; do
    expect 2 "larger than the slide, leaving less than 1 px; give --mpp \
1107.78 or less" \
        slidescan annotations "$tmp/t.geojson" --slide "$slide" \
        --out "$tmp/a7" --mpp "$big"
    check "... not calling it more than the limit" \
        bash -c '! grep -q "more than the limit" "$1"' _ "$tmp/err"
done

# --- annotations: coordinates far beyond the slide -------------------------
# A Tumor square from -1e11 to 1e11 (1.2e10 raster px at --mpp 4) covers
# the whole slide: every label is tumour (1), however far its corners lie
# past what an int holds.
sed 's/3e9/1e11/g' "$tmp/huge.geojson" >"$tmp/huge11.geojson"
slidescan annotations "$tmp/huge11.geojson" --slide "$slide" \
    --out "$tmp/a8" --mpp 4 >"$tmp/out" 2>"$tmp/err"
check "a square from -1e11 to 1e11 is imported (exit 0, features 1)" \
    [ $? = 0 -a -n "$(grep "features 1, skipped 0" "$tmp/out")" ]
hist=$(python3 -c 'import struct, sys, zlib
b = open(sys.argv[1], "rb").read()
w, h, depth, ctype = struct.unpack(">IIBB", b[16:26])
i, idat = 8, b""
while i < len(b):
    n, t = struct.unpack(">I4s", b[i:i + 8])
    if t == b"IDAT":
        idat += b[i + 8:i + 8 + n]
    i += 12 + n
raw, prev, out = zlib.decompress(idat), bytearray(w), {}
assert depth == 8 and ctype == 0
for y in range(h):
    f, row = raw[y * (w + 1)], bytearray(raw[y * (w + 1) + 1:(y + 1) * (w + 1)])
    for x in range(w):
        a, up = (row[x - 1] if x else 0), prev[x]
        c = prev[x - 1] if x else 0
        pa, pb, pc = abs(up - c), abs(a - c), abs(a + up - 2 * c)
        paeth = a if pa <= pb and pa <= pc else up if pb <= pc else c
        row[x] = (row[x] + [0, a, up, (a + up) // 2, paeth][f]) & 255
    for v in row:
        out[v] = out.get(v, 0) + 1
    prev = row
print(" ".join("%d:%d" % kv for kv in sorted(out.items())))' \
    "$tmp/a8/labels.png" 2>&1)
echo "# labels.png histogram (value:count): $hist"
check "... and every label pixel is tumour (1)" \
    [ "$hist" = "1:$((277 * 371))" ]

rm -rf "$tmp"
echo "1..$n"
