#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 60
#
# Hardware configured but absent (no camera, no stage on this machine):
# never a silent fall-back to the simulator.  A scan stays queued (not
# failed) with the reason naming the missing device, the status says why
# the queue waits (also while a retry reopens the devices), the daemon
# keeps retrying, `devices` reports what the configuration expects and
# what is missing, and a simulator-only argument (--image) is refused.
# A proscan stage needs its USB id configured: without vid and pid,
# `slidescand --check` and the start refuse the file at once (exit 1,
# naming file, section, key and cause) instead of a daemon that waits for
# a device it cannot look for.
. "$(dirname "$0")/../support/daemon_env.sh"

export HOME=$T                  # libgphoto2 keeps its settings there
hw="[microscope]
driver = hardware
[camera]
driver = gphoto2
[stage]
driver = proscan"
dtest_conf "$hw"
why="driver proscan has no known USB id: set vid and pid in [stage] to \
the controller's (4 hex digits each, as lsusb shows them)"
out=$(slidescand --check -c "$CONF" 2>&1)
rc=$?
check "--check refuses proscan without vid and pid (exit $rc)" test $rc = 1
check "... naming file, section, key and cause ($out)" \
    test "$out" = "slidescand: $CONF: [stage] vid: $why"
out=$(timeout 20 slidescand -c "$CONF" 2>&1)
rc=$?
check "the daemon refuses to start with it (exit $rc)" test $rc = 1
check "... with the same message" grep -qF "[stage] vid: $why" <<<"$out"
dtest_conf "$hw
vid = 1209"
out=$(slidescand --check -c "$CONF" 2>&1)
check "vid without pid: pid is named ($out)" \
    test "$out" = "slidescand: $CONF: [stage] pid: $why"

dtest_conf "$hw
vid = 1209
pid = 0001"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }

out=$(slidescan scan --slide H-1 --stain HE --image phantom:HE 2>&1)
rc=$?
check "--image is refused on hardware (exit 2, says why)" test $rc = 2 -a \
    -n "$(grep 'only the simulated microscope takes a slide image' \
    <<<"$out")"
slidescan scan --slide H-1 --stain HE >/dev/null
check "the scan waits with a reason naming the missing device" \
    wait_until 10 '[ "$(scan_state 1)" = queued ] && sqlite3 "$DB" \
    "SELECT reason FROM scans WHERE id = 1" | grep -qE \
    "waiting for the microscope: .*(stage|camera)"'
check "the daemon retries (every device_retry_s = 1 s)" \
    wait_until 10 '[ "$(grep -c "retrying devices" "$LOG")" -ge 2 ]'
check "the scan is still queued, not failed" test "$(scan_state 1)" = queued
check "the retries never took it off the queue (no calibrating state)" \
    test "$(grep -c 'state scan=1 .*state=calibrating' "$LOG")" = 0
st=$(slidescan status --once)
check "status says the queue is waiting and why" \
    grep -q "^waiting: waiting for the microscope: " <<<"$st"
# Each retry puts the scan on the microscope while the devices are
# reopened; the views must still show the wait then.  Sampled for three
# seconds, across about three retries.
samples=0 flicker=0 t0=$SECONDS
while [ $((SECONDS - t0)) -lt 3 ]; do
    st=$(slidescan status --once)
    row=$(slidescan queue | awk '$1 == 1 { print $4 }')
    samples=$((samples + 1))
    grep -q "^waiting: waiting for the microscope: " <<<"$st" &&
        [ "$row" = queued ] || flicker=$((flicker + 1))
done
check "status and queue show the wait during the retries too ($flicker of \
$samples samples did not)" test "$flicker" = 0 -a "$samples" -gt 1
dev=$(slidescan devices)
check "devices reports the hardware problems" grep -qE \
    "^problem: +(camera|stage): " <<<"$dev"
check "devices names the configured stage id as missing" grep -qE \
    "^problem: +stage: no USB device 1209:0001 attached" <<<"$dev"
check "no simulator was started" test "$(grep -c 'sim:' "$LOG")" = 0
dtest_stop
check "the daemon stops cleanly" test $? = 0
dtest_end
