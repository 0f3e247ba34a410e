#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# An output whose parent directory does not exist fails: every offline
# command (analyse, convert, eval, phantom, annotations, train, frame)
# and backup may create its own output file or directory, never the
# missing directories above it.  Each exits 1 (5 is for missing inputs)
# with "PARENT: No such file or directory", and creates nothing.  phantom
# refuses an --out that is not .tif/.tiff/.svs/.png (exit 2).
set -u

. "$(dirname "$0")/../support/tap.sh"

tmp=${TMPDIR:-/tmp}/outparent.$$
gone=$tmp/gone
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

# missing_parent PARENT CMD...: CMD exits 1 naming PARENT, creating none.
missing_parent() {
    local parent=$1 rc
    shift
    "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    echo "# ${*:1:2} ...: exit $rc: $(grep -v ' info ' "$tmp/err")"
    check "${*:1:2} into a missing directory exits 1" [ $rc = 1 ]
    check "... saying '$parent: No such file or directory'" \
        grep -qF -- "$parent: No such file or directory" "$tmp/err"
    check "... and creates no $gone" [ ! -e "$gone" ]
}

slidescan phantom --stain HE --size-mm 0.8x0.6 --out k.tif --labels k.png \
    >/dev/null 2>&1
check "a phantom slide with labels" [ -s k.tif ] && [ -s k.png ]
cat >t.geojson <<'JSON'
{"type": "FeatureCollection", "features": [{"type": "Feature",
 "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [300, 0], [300, 300], [0, 300], [0, 0]]]},
 "properties": {"classification": {"name": "Tumor"}}}]}
JSON

missing_parent "$gone/a" slidescan analyse k.tif --model classical \
    --out "$gone/a/b"
missing_parent "$gone" slidescan convert k.tif "$gone/x.svs"
missing_parent "$gone" slidescan eval --pred k.png --truth t.geojson \
    --json "$gone/e.json"
missing_parent "$gone" slidescan eval --pred k.png --truth t.geojson \
    --png "$gone/e.png"
missing_parent "$gone" slidescan phantom --size-mm 0.3x0.3 \
    --out "$gone/p.tif"
missing_parent "$gone" slidescan phantom --size-mm 0.3x0.3 --out p1.tif \
    --labels "$gone/l.png"
check "... nor the --out it could have written" [ ! -e p1.tif ]
missing_parent "$gone/a" slidescan annotations t.geojson --slide k.tif \
    --mpp 4 --out "$gone/a/b"
missing_parent "$gone/a" slidescan train --slide k.tif --labels k.png \
    --mpp 2 --epochs 1 --steps 1 --out "$gone/a/b"
mkdir -p "$tmp/data" && sqlite3 "$tmp/cat.db" "CREATE TABLE t (a)"
missing_parent "$gone/a" slidescan backup --data-dir "$tmp/data" \
    --catalogue "$tmp/cat.db" "$gone/a/b"
missing_parent "$gone" slidescan frame --slide k.tif --out "$gone/f.png"

# The last component is the command's own to create.
slidescan analyse k.tif --model classical --out "$tmp/an" >/dev/null 2>&1
check "analyse creates its own --out directory" [ -s "$tmp/an/results.json" ]

# phantom writes what its --out name says, or refuses (exit 2).
for bad in p.bmp p.jpg p; do
    slidescan phantom --size-mm 0.3x0.3 --out "$bad" >/dev/null 2>"$tmp/err"
    rc=$?
    echo "# phantom --out $bad: exit $rc: $(cat "$tmp/err")"
    check "phantom --out $bad exits 2" [ $rc = 2 ]
    check "... saying it must end in .tif, .tiff, .svs or .png" \
        grep -qF "slidescan phantom: --out '$bad' must end in .tif, .tiff, \
.svs or .png" "$tmp/err"
    check "... writing nothing" [ ! -e "$bad" ]
done
slidescan phantom --size-mm 0.3x0.3 --out p.png --labels l.bmp \
    >/dev/null 2>"$tmp/err"
check "phantom --labels l.bmp exits 2" [ $? = 2 ]
check "... saying it must end in .png" \
    grep -qF "slidescan phantom: --labels 'l.bmp' must end in .png" \
    "$tmp/err"
echo "1..$n"
