#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 30
#
# Seeds are whole numbers from 0 to 2^64-1 written as digits: phantom
# --seed, train --seed and a phantom spec's seed= refuse anything else
# (exit 2), quoting what was typed, never a wrapped value.
set -u

. "$(dirname "$0")/../support/tap.sh"

tmp=${TMPDIR:-/tmp}/seed.$$
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
range="is not a whole number from 0 to 18446744073709551615"

# refused TEXT CMD...: CMD exits 2 saying TEXT and writes no $tmp/p.png.
refused() {
    local text=$1 rc
    shift
    "$@" >/dev/null 2>"$tmp/err"
    rc=$?
    echo "# ${*:1:3} ...: exit $rc: $(cat "$tmp/err")"
    check "${*:1:3} ... exits 2" [ $rc = 2 ]
    check "... saying \"$text\"" grep -qF -- "$text" "$tmp/err"
    check "... and writes nothing" [ ! -e "$tmp/p.png" ]
}
for s in -1 99999999999999999999 18446744073709551616 +5 1e3 " 5"; do
    refused "slidescan phantom: --seed: '$s' $range" \
        slidescan phantom --seed "$s" --size-mm 0.1x0.1 --out "$tmp/p.png"
done
refused "seed '-1' $range" \
    slidescan frame --slide phantom:HE:seed=-1 --out "$tmp/p.png"
slidescan phantom --seed 18446744073709551615 --size-mm 0.1x0.1 \
    --out "$tmp/p.png" >"$tmp/out" 2>/dev/null
check "--seed 18446744073709551615 (the largest) is taken" \
    grep -qF "seed=18446744073709551615 " "$tmp/out"
echo "1..$n"
