#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 600
#
# slidescand under valgrind (memcheck, --leak-check=full
# --errors-for-leak-kinds=definite) through a whole small scan on the
# simulated microscope: queue, calibration, plan, focus, capture, a
# restart that resumes the scan (the first daemon is stopped with SIGTERM
# mid-capture), assembly, analysis by the (untraced) worker, show, and a
# clean stop.  Each daemon run must end with no memcheck error and no
# definitely lost block; the client's `show` is checked the same way.
. "$(dirname "$0")/../support/daemon_env.sh"

if ! command -v valgrind >/dev/null; then
    skip "valgrind is not installed"; dtest_end; exit 0
fi
if [ -n "${SLIDESCAN_SANITIZE:-}" ]; then
    skip "sanitizer builds do not run under valgrind"; dtest_end; exit 0
fi

VG="valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite \
--show-leak-kinds=definite --error-exitcode=99 --num-callers=30"
q() { sqlite3 "$DB" "$1" 2>/dev/null; }

dtest_conf "[microscope]
phantom_w_mm = 0.4
phantom_h_mm = 0.3
[simulator]
seed = 3
sensor_w = 256
sensor_h = 192
[deadlines]
capture_ms = 60000
move_ms = 60000
[storage]
reserve_mb = 1
[analysis]
auto = yes"

vg_start() {
    # shellcheck disable=SC2086
    $VG --log-file="$T/vg.$1.log" slidescand -c "$CONF" >>"$LOG" 2>&1 &
    DPID=$!
    wait_until 120 slidescan ping
}

vg_stop() {
    kill -TERM "$DPID"
    wait "$DPID"
    local rc=$?
    DPID=
    return $rc
}

report() {
    [ -s "$1" ] && sed 's/^/#   /' "$1" | head -40
}

vg_start 1 || { nok "slidescand starts under valgrind"; dtest_end; exit 1; }
ok "slidescand starts under valgrind"
slidescan scan --slide V --stain HE >/dev/null
check "the scan reaches capture" wait_until 300 \
    '[ "$(q "SELECT tiles_done FROM scans WHERE id = 1")" -ge 1 ]'
vg_stop
rc=$?
report "$T/vg.1.log"
check "first run (stopped mid-scan): no memcheck error, no definite leak" \
    test $rc = 0

vg_start 2 || { nok "slidescand restarts under valgrind"; dtest_end; exit 1; }
check "the restarted daemon finishes and analyses the scan" \
    wait_until 400 '[ "$(q "SELECT a.state FROM analyses a
                         WHERE a.scan = 1")" = done ]'
# shellcheck disable=SC2086
$VG --log-file="$T/vg.client.log" slidescan show V >/dev/null
rc=$?
report "$T/vg.client.log"
check "slidescan show: no memcheck error, no definite leak" test $rc = 0
vg_stop
rc=$?
report "$T/vg.2.log"
check "second run (scan, assembly, worker, stop): no memcheck error, no \
definite leak" test $rc = 0
dtest_end
