#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 240
#
# Every device fault of the simulated microscope, through the real daemon
# and client, with the state and message each must leave (field cases C1,
# C2, D2): a camera busy once is retried and recorded with the tile; busy
# on every call pauses the scan with "camera busy" and starts no other
# slide; a capture that never returns misses its deadline, is retried
# once, then the tile is marked failed and the scan and the queue go on; a
# camera held by another program, or unplugged and back, keeps the scan
# waiting (queued, not failed) until it is free and then completes it; a
# stage that stalls, loses steps or times out costs one retry of the tile.
# Each fault runs on a fresh daemon (the simulator's faults are set at
# start); the per-operation deadline is cut to 600 ms.
. "$(dirname "$0")/../support/daemon_env.sh"

q() { sqlite3 "$DB" "$1" 2>/dev/null; }
state() { q "SELECT state FROM scans WHERE id = $1"; }
reason() { q "SELECT reason FROM scans WHERE id = $1"; }

conf() {
    dtest_conf "[microscope]
phantom_w_mm = 0.8
phantom_h_mm = 0.6
[simulator]
seed = 3
sensor_w = 640
sensor_h = 480
fault = ${1:-}
${2:-}
[deadlines]
capture_ms = 600
move_ms = 600
busy_backoff_ms = 20
[storage]
reserve_mb = 1
[analysis]
auto = no"
}

# A data directory where scan 1 (slide A) is calibrated, planned, focused
# and two tiles into capture, then paused, so that the faults (counted
# from the daemon's start) land in its tiles.  Made once, then copied.
prepared() {
    dtest_stop
    rm -rf "$DATA"
    if [ -d "$T/prepared" ]; then
        cp -a "$T/prepared" "$DATA"
        return 0
    fi
    # Real time at a tenth of the virtual clock, so that the pause lands
    # after tile 2 and well before tile 9 on a fast machine as on a slow.
    conf "" "time_scale = 0.1"
    dtest_start || return 1
    slidescan scan --slide A --stain HE >/dev/null
    wait_until 60 '[ "$(q "SELECT tiles_done FROM scans
                        WHERE id = 1")" -ge 2 ]' || return 1
    slidescan pause 1 >/dev/null
    wait_until 20 '[ "$(state 1)" = paused ]' || return 1
    dtest_stop
    cp -a "$DATA" "$T/prepared"
}

# The daemon again, with fault $1 in its simulator, scan 1 resumed.
with_fault() {
    prepared || return 1
    : >"$LOG"
    conf "$1"
    dtest_start || return 1
    slidescan resume 1 >/dev/null
}

queue() {
    local s
    for s in "$@"; do
        slidescan scan --slide "$s" --stain HE >/dev/null
    done
}

# --- C1: busy once ---------------------------------------------------------
with_fault "camera_busy@capture=2" || { nok "a scan is prepared"; \
    dtest_end; exit 1; }
check "C1 busy once: the scan completes" \
    wait_until 60 '[ "$(state 1)" = done ]'
check "C1 busy once: one tile records one busy retry, no reset" test \
    "$(q "SELECT COUNT(*), SUM(busy_retries), SUM(resets) FROM tiles
          WHERE busy_retries > 0")" = "1|1|0"
out=$(slidescan show A)
check "C1 busy once: show lists the tile as flagged, with its reason" \
    eval 'grep -q "^  flagged tiles (1): " <<<"$out" &&
          grep -qE "1 busy retry +device retry$" <<<"$out"'

# --- C1: busy always --------------------------------------------------------
with_fault "camera_busy@always"
queue B
check "C1 busy always: the scan pauses" \
    wait_until 60 '[ "$(state 1)" = paused ]'
check "C1 busy always: the reason says \"camera busy\" ($(reason 1))" \
    grep -q "camera busy" <<<"$(reason 1)"
check "C1 busy always: the camera was reset once" \
    grep -q "camera reset reason=busy" "$LOG"
sleep 2
check "C1 busy always: the next slide is not started" \
    test "$(state 2)" = queued
check "C1 busy always: the queue shows the reason" \
    grep -q "camera busy" <<<"$(slidescan queue --json)"

# --- D2: a capture that never returns, twice -------------------------------
with_fault "capture_hang@capture=2:for=2"
queue B
check "D2: the scan completes with the hung tile failed" \
    wait_until 60 '[ "$(state 1)" = done ]'
check "D2: exactly one tile failed, after 2 attempts and 2 deadlines" test \
    "$(q "SELECT COUNT(*), MAX(attempts), SUM(timeouts) FROM tiles
          WHERE scan = 1 AND state = 'failed'")" = "1|2|2"
check "D2: the deadline message names the operation and the time" \
    grep -q "camera: capture did not return within 600 ms" "$LOG"
check "D2: every other tile is captured" test \
    "$(q "SELECT COUNT(*) FROM tiles WHERE scan = 1 AND state =
          'captured'")" = "$(( $(q "SELECT tiles_total FROM scans
          WHERE id = 1") - 1 ))"
check "D2: the next queued slide starts and completes" \
    wait_until 60 '[ "$(state 2)" = done ]'
gap=$(q "SELECT CAST(round((julianday(b.started) - julianday(a.finished))
         * 86400) AS INTEGER) FROM scans a, scans b WHERE a.id = 1 AND
         b.id = 2")
check "D2: the next slide started on time (${gap}s after the first)" \
    test "${gap:-99}" -le 15

# --- C2: held by another program ---------------------------------------------
dtest_stop
rm -rf "$DATA"
: >"$LOG"
conf "camera_held@open=1:for=3"
dtest_start
queue A B
check "C2 held: the scans stay queued, not failed" \
    wait_until 10 '[ "$(state 1)" = queued ] &&
                   [ -n "$(grep "held by another program" "$LOG")" ]'
check "C2 held: a clear log line says the camera is held" \
    grep -q "camera: held by another program" "$LOG"
check "C2 held: both scans complete once the camera is free" \
    wait_until 30 '[ "$(state 1)" = done ] && [ "$(state 2)" = done ]'

# --- unplugged and back ------------------------------------------------------
with_fault "camera_unplug@capture=2:for=3"
check "unplug: the scan completes once the camera is back" \
    wait_until 60 '[ "$(state 1)" = done ]'
check "unplug: the log names the disconnection" \
    grep -q "camera: device disconnected" "$LOG"
check "unplug: no tile is failed" \
    test "$(q "SELECT COUNT(*) FROM tiles WHERE state = 'failed'")" = 0

# --- the stage: stall, lost steps, timeout ---------------------------------
for f in "stage_stall@move=3:motor stalled" \
         "lost_steps@move=3:um=40:for=2:steps lost" \
         "stage_timeout@move=3:did not answer the move"; do
    spec=${f%:*}
    words=${f##*:}
    name=${spec%%@*}
    with_fault "$spec"
    check "$name: the scan completes" wait_until 60 '[ "$(state 1)" = done ]'
    check "$name: the fault was logged (\"$words\") and the tile retried" \
        grep -q "tile fault .*action=retry tile.*$words" "$LOG"
    check "$name: no tile is failed" \
        test "$(q "SELECT COUNT(*) FROM tiles WHERE state = 'failed'")" = 0
done
dtest_stop
dtest_end
