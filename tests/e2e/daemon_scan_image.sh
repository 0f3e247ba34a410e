#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 90
#
# `slidescan scan --image FILE` with a relative FILE: the client sends the
# absolute path (its "@MPP" and ":stain=" parts kept), so the daemon,
# whose working directory is elsewhere, scans the file the user meant.
# The daemon refuses at queue time a file that is missing, a directory or
# not a slide, with the file and the cause, and queues nothing.
. "$(dirname "$0")/../support/daemon_env.sh"

W=$T/work
mkdir -p "$W/sub"
dtest_conf
# The daemon's working directory is /, as under systemd.
cd / || exit 1
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
slidescan phantom --out "$W/p.png" --size-mm 0.6x0.5 --seed 3 >/dev/null
check "a phantom PNG to scan" test -s "$W/p.png"

out=$(cd "$W/sub" && slidescan scan --slide R1 --stain HE \
      --image ../p.png@0.5:stain=HE 2>&1)
check "a relative file is queued ($out)" test $? = 0
check "the catalogue holds its absolute path, suffixes kept" \
    test "$(sqlite3 "$DB" "SELECT image FROM scans WHERE id = 1")" = \
    "$W/p.png@0.5:stain=HE"
check "the daemon scans it" wait_until 60 '[ "$(scan_state 1)" = done ]'

# refused SPEC WANT: queueing SPEC from $W is refused as a bad request
# (exit 2, as for a malformed spec) with WANT.
refused() {
    local out rc want="slidescan scan: bad_request: args.image: $2"
    out=$(cd "$W" && slidescan scan --slide R2 --stain HE --image "$1" 2>&1)
    rc=$?
    echo "# $out"
    check "--image $1 is refused (exit $rc)" test "$rc" = 2
    check "... with: $2" eval '[[ $out == "$want"* ]]'
}
refused missing.svs "'$W/missing.svs': $W/missing.svs: no such file"
refused sub "'$W/sub': $W/sub is a directory, not a slide image"
echo "not a slide" >"$W/notes.txt"
refused notes.txt "'$W/notes.txt': cannot be read as a slide: $W/notes.txt"
check "nothing else was queued" \
    test "$(sqlite3 "$DB" "SELECT count(*) FROM scans")" = 1
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
