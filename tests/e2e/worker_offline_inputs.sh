#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 60
#
# Inputs of eval and annotations: a --pred or --truth file, a GeoJSON or
# a --slide that does not exist exits 5 (not found) with "FILE: No such
# file or directory", like verify, analyse and convert; text that is not
# JSON stays a failure (1).  annotations refuses an --mpp whose label
# raster would pass 2^28 px (exit 2, the size and the limit named, the
# smallest --mpp that fits given) before allocating anything, and a --mpp
# that is not a positive number.
set -u

n=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else nok "$what"; fi
}

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

rm -rf "$tmp"
echo "1..$n"
