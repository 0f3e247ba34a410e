#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# Offline commands writing onto a disk that cannot take their output:
# analyse (pyramidal TIFF, PNG, JSON), convert (the slide writer), eval
# (--json, --png), annotations (PNG) and phantom (streamed PNG).  Each
# exits 1 with one message that names the file the user asked for and
# the cause, never a temporary name (*.partial, *.tmp.PID) or libtiff's
# scanline number, and leaves no temporary file; analyse removes an
# output directory it created, and leaves one that existed without
# results.json; phantom removes every output it wrote when one fails.
#
# As root the disk is a 4 MiB tmpfs, filled up, in a private mount
# namespace of this test ("No space left on device"); otherwise the
# commands run under a file size limit of 0 with SIGXFSZ ignored ("File
# too large"), which fails the same writes the same way.
if [ -z "${OUTERR_IN_NS:-}" ] && [ "$(id -u)" = 0 ] &&
    unshare --mount --propagation private true 2>/dev/null; then
    OUTERR_IN_NS=1 exec unshare --mount --propagation private "$0" "$@"
fi
set -u

. "$(dirname "$0")/../support/tap.sh"

tmp=${TMPDIR:-/tmp}/outerr.$$
data=${SLIDESCAN_DATA:-}
slide=$data/wsi/CMU-1-Small-Region.svs
full=$tmp/full
mkdir -p "$full"

if [ -n "${OUTERR_IN_NS:-}" ] &&
    mount -t tmpfs -o size=4m tmpfs "$full" 2>/dev/null; then
    cause="No space left on device"
    mkdir -p "$full/pre" && echo '{}' >"$full/pre/results.json"
    dd if=/dev/zero of="$full/filler" bs=64k 2>/dev/null
    run() { "$@"; }
    cleanup() { umount "$full"; rm -rf "$tmp"; }
else
    cause="File too large"
    mkdir -p "$full/pre" && echo '{}' >"$full/pre/results.json"
    run() { ( trap '' XFSZ; ulimit -f 0; "$@" ); }
    cleanup() { rm -rf "$tmp"; }
fi
echo "# full disk: $cause"

# expect_fail NAME FILE CMD...: CMD exits 1 naming FILE and the cause.
expect_fail() {
    local name=$1 file=$2
    shift 2
    # stderr through a pipe: a file size limit does not apply to pipes.
    run "$@" 2>&1 >/dev/null | cat >"$tmp/err"
    local rc=${PIPESTATUS[0]}
    echo "# $name: exit $rc: $(cat "$tmp/err")"
    check "$name exits 1" [ $rc = 1 ]
    check "$name names $file" grep -qF "$file" "$tmp/err"
    check "$name states the cause" grep -qF "$cause" "$tmp/err"
    check "$name names no temporary file nor a scanline" \
        bash -c '! grep -Eq "\.partial|\.tmp\.|\.spool|scanline" "$1"' _ \
        "$tmp/err"
    check "$name leaves no temporary file" \
        bash -c '[ -z "$(find "$1" -name "*.partial" -o -name "*.tmp.*" \
                  -o -name "*.spool.*")" ]' _ "$full"
}

# --- eval and annotations: small inputs written here --------------------
cat >"$tmp/t.geojson" <<'JSON'
{"type": "FeatureCollection", "features": [{"type": "Feature",
 "geometry": {"type": "Polygon", "coordinates": [
   [[0, 0], [300, 0], [300, 300], [0, 300], [0, 0]]]},
 "properties": {"classification": {"name": "Tumor"}}}]}
JSON
# A 300 × 300 prediction of random classes: its eval PNG does not
# compress below stdio's buffer, so the write itself fails (a small one
# fails only when flushed, where libpng does report errno).
python3 -c 'import random, struct, sys, zlib
def chunk(t, d):
    return (struct.pack(">I", len(d)) + t + d +
            struct.pack(">I", zlib.crc32(t + d) & 0xffffffff))
r = random.Random(7)
raw = b"".join(b"\0" + bytes(r.randrange(3) for _ in range(300))
               for _ in range(300))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" +
    chunk(b"IHDR", struct.pack(">IIBBBBB", 300, 300, 8, 0, 0, 0, 0)) +
    chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))' \
    "$tmp/pred.png"

expect_fail "eval --json" "$full/e.json" \
    slidescan eval --pred "$tmp/pred.png" --truth "$tmp/t.geojson" \
    --json "$full/e.json"
check "eval --json leaves no e.json" [ ! -e "$full/e.json" ]
expect_fail "eval --png" "$full/e.png" \
    slidescan eval --pred "$tmp/pred.png" --truth "$tmp/t.geojson" \
    --png "$full/e.png"
check "eval --png leaves no partial e.png" [ ! -e "$full/e.png" ]

# A directory that does not exist: named, not created, no temporary name.
slidescan eval --pred "$tmp/pred.png" --truth "$tmp/t.geojson" \
    --json "$tmp/nodir/x.json" >/dev/null 2>"$tmp/err"
rc=$?
echo "# eval --json nodir: exit $rc: $(cat "$tmp/err")"
check "eval --json into a missing directory exits 1" [ $rc = 1 ]
check "... naming the missing directory and the cause" \
    grep -qF "$tmp/nodir: No such file or directory" "$tmp/err"
check "... which it does not create" [ ! -e "$tmp/nodir" ]

# The phantom's streamed PNG (its own libpng writer).
expect_fail "phantom" "$full/p.png" \
    slidescan phantom --stain HE --size-mm 1x1 --out "$full/p.png"
check "phantom leaves no p.png" [ ! -e "$full/p.png" ]
# --out on a disk with room, --labels on the full one: the labels fail
# after the TIFF is complete, and the TIFF goes too (no half set).
expect_fail "phantom --labels" "$full/l.png" \
    slidescan phantom --stain HE --size-mm 1x1 --out "$tmp/ok.tif" \
    --labels "$full/l.png"
check "phantom --labels leaves no --out TIFF" [ ! -e "$tmp/ok.tif" ]
check "... and no l.png" [ ! -e "$full/l.png" ]
# --truth on the full disk: it fails after the TIFF and the labels are
# complete, and both go.
expect_fail "phantom --truth" "$full/t.json" \
    slidescan phantom --stain HE --size-mm 1x1 --out "$tmp/ok2.tif" \
    --labels "$tmp/ok2.png" --truth "$full/t.json"
check "phantom --truth leaves no --out TIFF" [ ! -e "$tmp/ok2.tif" ]
check "... no --labels PNG" [ ! -e "$tmp/ok2.png" ]
check "... and no t.json" [ ! -e "$full/t.json" ]

if [ -z "$data" ] || [ ! -f "$slide" ]; then
    skip "shared data absent: no slide for analyse, convert, annotations"
    cleanup
    echo "1..$n"
    exit 0
fi

expect_fail "annotations" "$full/ann" \
    slidescan annotations "$tmp/t.geojson" --slide "$slide" \
    --out "$full/ann"

# --- analyse --------------------------------------------------------------
expect_fail "analyse" "$full/an/" \
    slidescan analyse "$slide" --out "$full/an"
check "analyse removes the output directory it created" [ ! -e "$full/an" ]

check "an earlier results.json to start with" [ -s "$full/pre/results.json" ]
expect_fail "analyse into an existing directory" "$full/pre/" \
    slidescan analyse "$slide" --out "$full/pre"
check "... which keeps no results.json" [ ! -e "$full/pre/results.json" ]
check "... and stays" [ -d "$full/pre" ]

# --- convert: the slide writer ----------------------------------------------
expect_fail "convert" "$full/out.svs" \
    slidescan convert "$slide" "$full/out.svs"
check "convert leaves no out.svs" [ ! -e "$full/out.svs" ]

cleanup
echo "1..$n"
