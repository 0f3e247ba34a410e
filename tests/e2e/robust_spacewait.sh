#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# A scan waiting for space because of the configured [storage] reserve
# (the disk itself has room):
#   - its reason says there is not enough free space for this scan, with
#     the free space, what the rest needs and the reserve of
#     [storage] reserve_mb, and that it resumes by itself; never
#     "disk full", which only a failed write may say
#   - `resume` checks again and says what is missing (exit 1);
#     `requeue` says it waits for space and resumes by itself
#   - `slidescan reload` with a smaller reserve applies to the waiting
#     scan at once (even with recheck_s = 600): it goes on and completes
#   - a `pause` acknowledged during the wait is in the catalogue before
#     the reply: a SIGTERM, or a SIGKILL, right after it and a start with
#     room on the disk leave the scan paused by request, no tile captured.
#   - a SIGKILL while a scan waits for space mid-scan, with no pause
#     asked for, and a start with room on the disk: the scan resumes by
#     itself and completes, with the tiles captured before the wait kept
#     as they were (not captured again).
. "$(dirname "$0")/../support/daemon_env.sh"

q() { sqlite3 "$DB" "$1" 2>/dev/null; }
reason() { q "SELECT reason FROM scans WHERE id = $1"; }
tiles() { q "SELECT tiles_done FROM scans WHERE id = $1"; }
storage() {
    dtest_conf "[storage]
reserve_mb = $1
recheck_s = 600
[analysis]
auto = no"
}

storage 100000000
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }

# --- the reason -----------------------------------------------------------
slidescan scan --slide A --stain HE >/dev/null
check "the scan waits for space before its first tile" \
    wait_until 30 '[ "$(scan_state 1)" = paused ] && [ -n "$(reason 1)" ]'
r=$(reason 1)
echo "# reason: $r"
check "the reason names a shortfall for this scan, with the figures" \
    grep -qE "^not enough free space on $DATA for this scan \([0-9.]+ \
(MiB|GiB) free; the rest of the scan needs [0-9.]+ (B|MiB|GiB) plus the \
97656\.25 GiB reserve, \[storage\] reserve_mb\); the scan resumes by \
itself when space is freed$" <<<"$r"
check "the reason does not say the disk is full" \
    eval '! grep -q "disk full" <<<"$r"'
row=$(slidescan queue | awk '$1 == 1')
check "queue shows the reason" grep -q "not enough free space" <<<"$row"

# --- resume and requeue ---------------------------------------------------
out=$(slidescan resume 1 2>&1)
rc=$?
echo "# resume: $out"
check "resume of the waiting scan fails (exit 1: its state)" test $rc = 1
check "resume says the scan waits for space and what is short" \
    grep -q "scan 1 waits for space and cannot go on yet: not enough free \
space on $DATA for this scan (.* plus the 97656.25 GiB reserve" <<<"$out"
check "resume does not contradict itself" \
    eval '! grep -q "only a paused scan" <<<"$out"'
out=$(slidescan requeue 1 2>&1)
rc=$?
echo "# requeue: $out"
check "requeue says it waits for space and resumes by itself (exit 1)" \
    eval '[ $rc = 1 ] && grep -q "scan 1 waits on the microscope for space \
and needs no requeue: not enough free space .*; the scan resumes by itself \
when space is freed (.resume. checks again at once" <<<"$out"'
check "the scan is still waiting, no tile captured" \
    test "$(scan_state 1)/$(tiles 1)" = paused/0

# --- reload applies to the waiting scan -----------------------------------
storage 0
out=$(slidescan reload)
echo "# reload: $out"
check "with the reserve lowered by reload, the scan completes" \
    wait_until 60 '[ "$(scan_state 1)" = done ]'

# --- a pause during the wait survives a stop right after the reply --------
# (Each part on its own: a scan 1 still waiting would hold the next.)
if [ "$(scan_state 1)" != done ]; then
    slidescan cancel 1 >/dev/null
    wait_until 10 '[ "$(scan_state 1)" = cancelled ]'
fi
# pause_then_stop SIGNAL SLIDE SCAN WHAT: a scan waiting for space is
# paused, the daemon gets SIGNAL right after the reply, and the next start
# finds the pause applied before any tile.
pause_then_stop() {
    local sig=$1 slide=$2 id=$3 what=$4 out
    storage 100000000
    slidescan reload >/dev/null
    slidescan scan --slide "$slide" --stain HE >/dev/null
    wait_until 30 "[ \"\$(scan_state $id)\" = paused ] && \
        [ -n \"\$(reason $id)\" ]"
    out=$(slidescan pause "$id")
    kill "-$sig" "$DPID"
    wait "$DPID"
    DPID=
    check "pause of scan $id answered 'pausing'" grep -q "pausing" <<<"$out"
    storage 0
    dtest_start || { nok "slidescand starts after $what"; dtest_end; exit 1; }
    sleep 2
    check "after $what scan $id is paused by request, no tile captured" \
        test "$(scan_state "$id")|$(reason "$id")|$(tiles "$id")" = \
             "paused|paused by request|0"
}
pause_then_stop TERM B 2 "a stop"
slidescan resume 2 >/dev/null
check "resumed, it completes" wait_until 60 '[ "$(scan_state 2)" = done ]'

# --- ... and a crash (SIGKILL) right after the reply ----------------------
pause_then_stop KILL C 3 "a crash"

# --- a crash while waiting for space mid-scan, no pause asked for ---------
# A larger slide (more tiles) so that the wait comes between two tiles.
slidescan scan --slide D --stain HE --image phantom:HE:w_mm=3:h_mm=2 \
    >/dev/null
wait_until 60 '[ "$(tiles 4)" -ge 2 ]'
storage 100000000
slidescan reload >/dev/null
check "scan 4 waits for space after some tiles" \
    wait_until 30 '[ "$(scan_state 4)" = paused ] && [ -n "$(reason 4)" ]'
kept=$(tiles 4)
total=$(q "SELECT tiles_total FROM scans WHERE id = 4")
shot=$(q "SELECT group_concat(idx || '@' || captured, ' ') FROM (SELECT \
idx, captured FROM tiles WHERE scan = 4 AND state = 'captured' ORDER BY idx)")
echo "# before the kill: $kept of $total tiles, reason: $(reason 4)"
check "it had captured tiles, not all" \
    eval '[ "$kept" -ge 2 ] && [ "$kept" -lt "$total" ]'
kill -KILL "$DPID"
wait "$DPID"
DPID=
storage 0
dtest_start || { nok "slidescand starts after the crash"; dtest_end; exit 1; }
check "after the crash scan 4 resumes by itself and completes" \
    wait_until 60 '[ "$(scan_state 4)" = done ]'
echo "# after: $(scan_state 4) $(tiles 4)/$total reason '$(reason 4)'"
check "all its tiles are captured" test "$(tiles 4)" = "$total"
after=$(q "SELECT group_concat(idx || '@' || captured, ' ') FROM tiles \
WHERE scan = 4 AND state = 'captured'")
miss=0
for t in $shot; do
    grep -qF " $t " <<<" $after " || miss=$((miss + 1))
done
check "the $kept tiles from before the crash are kept, not captured again" \
    test "$miss" = 0
check "scan 3, paused by request, stays paused" \
    test "$(scan_state 3)|$(reason 3)" = "paused|paused by request"
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
