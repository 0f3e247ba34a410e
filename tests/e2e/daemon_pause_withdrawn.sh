#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 90
#
# A pause asked for while the scan is inside a long step (here the
# calibration, on a simulator running in real time) waits for the step to
# end; a resume before then withdraws it: `resume` answers that the pause
# was withdrawn, and the scan goes on instead of pausing.  Once the scan
# has acted on a pause, `resume` of the running scan is refused with a
# message saying what to do.
. "$(dirname "$0")/../support/daemon_env.sh"

dtest_conf "[simulator]
time_scale = 1
[scan]
calib_frames = 8
[analysis]
auto = no"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
slidescan scan --slide W --stain KI67 --image phantom:KI67:w_mm=0.8:h_mm=0.6 \
    >/dev/null
check "the scan is calibrating (in real time)" \
    wait_until 20 '[ "$(scan_state 1)" = calibrating ]'
out=$(slidescan pause 1 2>&1)
check "pause during the calibration: pausing ($out)" \
    test "$out" = "scan 1: pausing"
out=$(slidescan resume 1 2>&1)
rc=$?
echo "# $out"
check "resume before the step ends withdraws the pause (exit $rc)" \
    test $rc = 0 -a "$out" = "scan 1: calibrating (the pause asked for was withdrawn; the scan goes on)"
check "the scan goes on past the calibration without pausing" \
    wait_until 60 'case "$(scan_state 1)" in planning|focusing|capturing) true;; *) false;; esac'
check "... and was never paused" \
    test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM scans WHERE state = 'paused'")" = 0
out=$(slidescan resume 1 2>&1)
rc=$?
echo "# $out"
check "resume of a running scan with no pause asked for is refused (exit $rc)" \
    eval '[ $rc = 1 ] && grep -q "only a paused scan can be resumed" <<<"$out"'
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
