#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 90
#
# The client's wording, exact: `reanalyse` says what it queued and prefixes
# its errors with its own name; a malformed --region says which form it
# wants; `calibrate` without --stain says what is missing; `scan --wait`
# shows the ETA as unknown ("--:--") until the tiles are planned.
. "$(dirname "$0")/../support/daemon_env.sh"

# expect WHAT CODE TEXT CMD...: CMD exits CODE and prints exactly TEXT
# (stdout and stderr together).
expect() {
    local what=$1 code=$2 want=$3 out rc
    shift 3
    out=$("$@" 2>&1)
    rc=$?
    [ "$out" = "$want" ] || echo "# got: $out"
    check "$what (exit $rc)" test "$rc" = "$code" -a "$out" = "$want"
}

dtest_conf "[analysis]
auto = no"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }

out=$(slidescan scan --slide E --stain HE --wait 2>/dev/null)
echo "$out" | head -3 | sed 's/^/# /'
check "scan --wait finishes" test "$(scan_state 1)" = done
check "the ETA is --:-- while no tile is planned" \
    grep -Eq "^scan 1 E [a-z]+ 0/0 tiles elapsed [0-9:]+ eta --:--$" \
    <<<"$out"
check "... and never 0:00 then" eval '! grep -q "0/0 tiles.*eta 0:00" <<<"$out"'

expect "reanalyse says what it queued" 0 "scan 1: analysis queued" \
    slidescan reanalyse 1
expect "reanalyse errors carry its own name" 5 \
    "slidescan reanalyse: not_found: no scan 99" slidescan reanalyse 99
expect "reanalyse without SCAN says so" 2 \
    "slidescan reanalyse: SCAN missing (see slidescan reanalyse --help)" \
    slidescan reanalyse
expect "a short --region says the form it wants" 2 \
    "slidescan scan: bad_request: args.region: must be X,Y,W,H in stage \
micrometres with W and H positive ('1,2,3' has 5 characters, 7..120 \
expected)" slidescan scan --slide R --stain HE --region=1,2,3
expect "calibrate without --stain says what is missing" 2 \
    "slidescan calibrate: --stain HE|KI67|CK missing (see slidescan \
calibrate --help)" slidescan calibrate
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
