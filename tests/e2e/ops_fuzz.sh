#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 150
#
# A short run of the protocol fuzz target (tests/fuzz/run, the same as
# `make fuzz` with FUZZ_SECONDS=15), built in this test's directory: it
# must build, get through the whole seed corpus, keep fuzzing for the
# full time at a useful rate, and end with no crash, sanitizer report,
# leak or slow input.  Skips when clang or its fuzzer runtime is missing.
set -u

ROOT=${SLIDESCAN_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
T=$(mktemp -d "${TMPDIR:-/tmp}/ops-fuzz.XXXXXX")
trap 'rm -rf "$T"' EXIT
SECS=15
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
nok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $*"; }
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else nok "$what"; fi
}

if ! command -v clang >/dev/null ||
    ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a \
        >/dev/null 2>&1; then
    echo "ok 1 # SKIP clang with libFuzzer is not installed" \
         "(apt-get install clang libclang-rt-14-dev)"
    echo "1..1"
    exit 0
fi

out=$(FUZZ_BUILD=$T/fuzz "$ROOT/tests/fuzz/run" --build-only 2>&1)
check "the fuzz target builds with clang -fsanitize=fuzzer,address,undefined" \
    test $? = 0 -a -x "$T/fuzz/fuzz_protocol"
[ -x "$T/fuzz/fuzz_protocol" ] || { echo "$out" | sed 's/^/# /'; }

t0=$SECONDS
out=$(FUZZ_BUILD=$T/fuzz FUZZ_SECONDS=$SECS "$ROOT/tests/fuzz/run" 2>&1)
rc=$?
took=$((SECONDS - t0))
echo "$out" | sed 's/^/# /'
log=$T/fuzz/fuzz_protocol.log
seeds=$(find "$ROOT/tests/fuzz/corpus" -type f | wc -l)
check "libFuzzer read all $seeds seeds" \
    grep -qE "INFO: seed corpus: files: $seeds " "$log"
why=$(grep -m1 -E '^fuzz_protocol: |ERROR: |SUMMARY: ' "$log")
what="no crash, sanitizer report, leak or slow input in $SECS s"
check "$what${why:+ ($why)}" \
    test $rc = 0
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
if [ $rc = 0 ]; then
    check "it fuzzed for the whole $SECS s (run took $took s)" \
        test $took -ge $SECS
    check "at least 100 inputs per second (${runs:-0} in $SECS s)" \
        test "${runs:-0}" -ge $((SECS * 100))
else
    n=$((n + 1)); echo "ok $n # SKIP rate not measured: stopped at a finding"
fi
if [ $rc != 0 ]; then
    for a in "$T"/fuzz/artifacts/*; do
        [ -f "$a" ] || continue
        echo "# input that failed ($(basename "$a")), base64:"
        base64 -w 76 "$a" | head -20 | sed 's/^/#   /'
    done
fi
echo "1..$n"
[ $fails = 0 ]
