#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 90
#
# While a scan waits for a camera held by another program (the simulator's
# camera_held fault on the first three opens), every view says why: the
# `queue` table's REASON, `queue --json`, `show` and `status` all carry
# "waiting for the microscope: camera: held by another program ...", and
# the scan is listed as queued (not as calibrating with no reason).  Once
# the camera is free both scans finish.
. "$(dirname "$0")/../support/daemon_env.sh"

WHY="waiting for the microscope: camera: held by another program"
dtest_conf "[daemon]
device_retry_s = 2
[simulator]
fault = camera_held@open=1:for=3
[analysis]
auto = no"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
slidescan scan --slide A --stain HE >/dev/null
slidescan scan --slide B --stain HE >/dev/null
wait_until 10 'grep -q "sched: waiting retry_s" "$LOG"'

row=$(slidescan queue | awk '$1 == 1')
echo "# $row"
check "queue: scan 1 is queued with the reason" \
    eval '[[ $row == *" A "*" queued "*"$WHY"* ]]'
json=$(slidescan queue --json)
check "queue --json: state queued and the reason" test "$(python3 -c '
import json, sys
s = [x for x in json.loads(sys.argv[1])["scans"] if x["id"] == 1][0]
print(s["state"], s["reason"].startswith(sys.argv[2]))' "$json" "$WHY")" \
    = "queued True"
show=$(slidescan show A)
check "show: the scan line gives the reason" \
    grep -q "^scan 1: queued: $WHY" <<<"$show"
check "status: waiting with the reason" \
    grep -q "^waiting: $WHY" <<<"$(slidescan status --once)"
row2=$(slidescan queue | awk '$1 == 2 { print $4, NF }')
check "queue: scan 2 waits behind it with no reason of its own" \
    test "$row2" = "queued 7"
check "both scans finish once the camera is free" \
    wait_until 60 '[ "$(scan_state 1)" = done ] && [ "$(scan_state 2)" = done ]'
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
