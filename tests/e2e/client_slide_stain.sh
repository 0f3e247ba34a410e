#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# The stain a slide file declares in its own metadata (Aperio "Stain =
# KI67", as slidescan phantoms and scans write it) is the slide's stain
# for the offline commands: analyse takes it when --stain is omitted and
# says so, and refuses a --stain that contradicts it (exit 2, both named);
# convert keeps it in OUT, and refuses a contradicting --stain unless
# --force-stain relabels the slide; frame takes it, and refuses a
# contradicting --stain; slidescan-worker analyse refuses one too.
# A FILE@MPP that contradicts the file's pixel size is refused by analyse
# and frame alike, unless forced.
set -u

. "$(dirname "$0")/../support/tap.sh"

tmp=${TMPDIR:-/tmp}/stain.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1

# run CODE CMD...: CMD exits CODE; its stdout and stderr are in out, err.
run() {
    local code=$1 rc
    shift
    "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    echo "# ${*:1:2} ...: exit $rc: $(grep -v ' info ' "$tmp/err")"
    check "${*:1:4} ... exits $code" [ $rc = "$code" ]
}
said() { check "... saying '$2'" grep -qF -- "$2" "$tmp/$1"; }
aperio_stain() {
    tiffinfo "$1" 2>/dev/null | grep -o 'Stain = [^|]*' | head -1
}

slidescan phantom --stain KI67 --size-mm 0.8x0.6 --out k.tif >/dev/null 2>&1
check "a KI67 phantom TIFF" [ "$(aperio_stain k.tif)" = "Stain = KI67" ]

# --- analyse --------------------------------------------------------------
run 0 slidescan analyse k.tif --model classical --out "$tmp/a1"
said out "stain                  KI67 (declared by the file)"
check "... and measures a KI67 index" \
    grep -qE '^KI67 index +0\.[0-9]+ ' "$tmp/out"
run 2 slidescan analyse k.tif --stain HE --model classical --out "$tmp/a2"
said err "slidescan analyse: --stain HE, but k.tif declares stain KI67"
check "... and writes nothing" [ ! -e "$tmp/a2" ]
run 0 slidescan analyse k.tif --stain ki67 --model classical \
    --out "$tmp/a3"
said out "stain                  KI67 (--stain)"

# The worker, which analyses scanned slides, holds its --stain to it too.
run 2 slidescan-worker analyse --wsi k.tif --stain HE --out "$tmp/w1"
said err "k.tif declares stain KI67; analysing it as HE would measure the \
wrong stain"
check "... and writes nothing" [ ! -e "$tmp/w1" ]

# --- convert --------------------------------------------------------------
run 0 slidescan convert k.tif k3.svs
check "... OUT keeps the stain" [ "$(aperio_stain k3.svs)" = "Stain = KI67" ]
run 2 slidescan convert k.tif k4.svs --stain HE
said err "k.tif declares stain KI67; --stain HE contradicts it; add \
--force-stain"
check "... and writes nothing" [ ! -e k4.svs ]
run 0 slidescan convert k.tif k5.svs --stain HE --force-stain
said err "warning: writing stain HE over the stain KI67 that k.tif declares"
check "... OUT is relabelled" [ "$(aperio_stain k5.svs)" = "Stain = HE" ]

# --- frame ----------------------------------------------------------------
run 2 slidescan frame --slide k.tif --stain HE --out f1.png
said err "slidescan frame: --stain HE, but the slide k.tif declares stain \
KI67"
check "... and writes nothing" [ ! -e f1.png ]
run 0 slidescan frame --slide k.tif --out f2.png
check "... without --stain, the KI67 exposure profile (600 ms)" \
    grep -q 'exposure_ms=600 ' "$tmp/out"
run 2 slidescan frame --slide phantom:KI67 --stain CK --out f3.png
said err "--stain CK, but the slide phantom:KI67 declares stain KI67"

# --- pixel size -----------------------------------------------------------
# k.tif states 0.5 um/px; an @MPP more than 1 % off it is refused by frame
# as by analyse (exit 2, both values named), unless forced.
run 2 slidescan analyse k.tif@0.25 --model classical --out "$tmp/a4"
said err "k.tif states 0.5 µm/px (openslide); the 0.25 µm/px given \
contradicts it; add --force-mpp"
run 2 slidescan frame --slide k.tif@0.25 --out f4.png
said err "slidescan frame: k.tif states 0.5 µm/px (openslide); the 0.25 \
µm/px given contradicts it; add :force_mpp (FILE@MPP:force_mpp) to use \
0.25 µm/px anyway"
check "... and writes nothing" [ ! -e f4.png ]
run 0 slidescan frame --slide k.tif@0.504 --out f5.png
check "... an @MPP within 1 % is taken" [ -s f5.png ]
run 0 slidescan frame --slide k.tif@0.25:force_mpp --out f6.png
check "... :force_mpp takes the contradicting one" [ -s f6.png ]
run 2 slidescan frame --slide k.tif:force_mpp --out f7.png
said err ":force_mpp without an @MPP to force"
echo "1..$n"
