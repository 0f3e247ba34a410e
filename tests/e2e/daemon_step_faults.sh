#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 240
#
# Field case D2 before the tiles: a capture that never returns during the
# focus map or the calibration, through the real daemon (deadline cut to
# 600 ms).  Every step follows the one fault policy (drivers/guard.h): a
# focus point is retried once, then skipped and the surface fitted from
# the other points; a calibration is taken again once after a missed
# deadline.  Either way the slide completes and the next queued slide
# starts on time.  A camera that hangs again on the retried calibration is
# unusable: the scan pauses with the deadline as its reason and holds the
# queue, the one documented case where a slide stops the queue.
. "$(dirname "$0")/../support/daemon_env.sh"

q() { sqlite3 "$DB" "$1" 2>/dev/null; }
state() { q "SELECT state FROM scans WHERE id = $1"; }

# A fresh daemon whose simulator hangs the captures of fault spec $1,
# with H1 (4 x 3 mm, 50 tiles of 512 x 384 µm) and H2 queued.
run_case() {
    dtest_stop
    rm -rf "$DATA"
    : >"$LOG"
    dtest_conf "[simulator]
seed = 3
fault = $1
[deadlines]
capture_ms = 600
[storage]
reserve_mb = 1
[analysis]
auto = no"
    dtest_start || return 1
    slidescan scan --slide H1 --stain HE \
        --image phantom:HE:seed=5:w_mm=4:h_mm=3 >/dev/null &&
        slidescan scan --slide H2 --stain HE >/dev/null
}

# Seconds from the end of scan 1 to the start of scan 2.
gap() {
    q "SELECT CAST(round((julianday(b.started) - julianday(a.finished))
       * 86400) AS INTEGER) FROM scans a, scans b WHERE a.id = 1 AND
       b.id = 2"
}

both_done() {
    check "$1: H1 completes" wait_until 90 '[ "$(state 1)" = done ]'
    check "$1: the next slide H2 completes" \
        wait_until 60 '[ "$(state 2)" = done ]'
    check "$1: H2 started on time ($(gap) s after H1 ended)" \
        test "$(gap)" -le 15
}

# --- a focus point: hung once, retried ------------------------------------
run_case "capture_hang@capture=7" || { nok "slidescand starts"; dtest_end;
                                       exit 1; }
both_done "focus point, hung once"
check "focus point, hung once: the point was retried after the deadline" \
    grep -q "point fault tile=[0-9]* attempt=0 action=retry tile cause=.*capture did not return within 600 ms" "$LOG"
check "focus point, hung once: every focus point has focus" test \
    "$(q "SELECT COUNT(*) = SUM(ok) FROM focus_points WHERE scan = 1")" = 1
check "focus point, hung once: no tile failed" \
    test "$(q "SELECT COUNT(*) FROM tiles WHERE state = 'failed'")" = 0

# --- a focus point: hung twice, skipped ----------------------------------
run_case "capture_hang@capture=7:for=2"
both_done "focus point, hung twice"
check "focus point, hung twice: the point was skipped after its retry" \
    grep -q "point fault tile=[0-9]* attempt=1 action=fail tile" "$LOG"
n=$(q "SELECT COUNT(*) || ' ' || SUM(ok) FROM focus_points WHERE scan = 1")
check "focus point, hung twice: one point left out of the map ($n)" \
    test "${n#* }" = "$(( ${n% *} - 1 ))"
check "focus point, hung twice: the map was fitted from the rest" \
    test "$(q "SELECT focus_model IS NOT NULL FROM scans WHERE id = 1")" = 1

# --- a calibration frame: hung once, calibration taken again ------------
run_case "capture_hang@capture=2"
both_done "calibration frame"
check "calibration frame: the calibration was taken again" \
    grep -q "step fault scan=1 step=calibration attempt=0 action=retry tile cause=.*capture did not return within 600 ms" "$LOG"
check "calibration frame: one calibration recorded" \
    test "$(q "SELECT COUNT(*) FROM calibrations")" = 1

# --- a calibration frame hung on the retry too: the camera is unusable ---
run_case "capture_hang@capture=2:for=2"
check "calibration hung twice: the scan pauses" \
    wait_until 30 '[ "$(state 1)" = paused ]'
check "calibration hung twice: the reason names the missed deadline" \
    grep -q "capture did not return within 600 ms" <<<"$(q "SELECT reason
                                              FROM scans WHERE id = 1")"
sleep 2
check "calibration hung twice: the queue is held (H2 not started)" \
    test "$(state 2)" = queued
check "calibration hung twice: status says why the queue waits" \
    grep -q "queue held by scan 1" <<<"$(slidescan status --once)"
dtest_stop
dtest_end
