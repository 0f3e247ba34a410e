#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 150
#
# Every client command against a private slidescand on the fast simulated
# microscope: queue operations in the order they really happen (a scan
# running while others are queued, moved, paused, cancelled, requeued and
# resumed), calibration, devices, slides, show, reanalyse, reload and
# SIGHUP, the exit codes of failures, and access control: a caller outside
# the configured group is refused (by the socket's mode, and by the
# daemon itself when the mode lets it through), a member is admitted, and
# the refusal is in the audit trail.
. "$(dirname "$0")/../support/daemon_env.sh"

GROUP=users                 # an existing group this test only configures
dtest_public_socket
# time_scale: the microscope takes a fifth of real time, so that the first
# scan is still running while the queue is worked on, however fast the
# machine renders frames.  The analyses run the classical baseline: this
# test is about the commands around them (the CNN through the daemon is
# daemon_end_to_end's), and on a loaded machine two CNN analyses of the
# 3 x 3 mm slide took longer than the waits here.
dtest_conf "[daemon]
group = $GROUP
socket_mode = 0666
log_level = info
[simulator]
time_scale = 0.2
[analysis]
model = classical"
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
ok "slidescand starts and answers ping"

qjson() { slidescan queue --json; }
pos_of() {      # queue position of scan $1
    qjson | python3 -c "import json,sys
for s in json.load(sys.stdin)['scans']:
    if s['id'] == $1: print(s.get('position', '-'))"
}
state_of() { scan_state "$1"; }
tiles_done() { sqlite3 "$DB" "SELECT tiles_done FROM scans WHERE id = $1"; }

# A slide big enough to still be capturing while the queue is worked on.
out=$(slidescan scan --slide A --stain HE --image phantom:HE:w_mm=3:h_mm=3)
check "scan queues and answers with the scan number" \
    test "$out" = "queued scan 1 (slide A, HE) at position 1"
check "scan A starts capturing" wait_until 60 \
    'test "$(tiles_done 1)" -ge 1'
ev=$(timeout 20 slidescan watch --count 2 --json)
check "watch streams JSON events of the running scan" \
    test "$(grep -c '"scan":1' <<<"$ev")" = 2
out=$(slidescan status --once)
check "status shows the running scan with its tiles" \
    grep -q "^scan 1: slide A HE, capturing, [0-9]*/[0-9]* tiles" <<<"$out"
out=$(slidescan calibrate --stain HE 2>&1)
rc=$?
check "calibrate while scanning is refused (exit 1, says busy)" \
    test $rc = 1 -a -n "$(grep 'busy with scan 1' <<<"$out")"
slidescan scan --slide B --stain HE >/dev/null
slidescan scan --slide C --stain KI67 --priority 5 >/dev/null
slidescan scan --slide D --stain CK >/dev/null
check "priority runs first: C 1, B 2, D 3" \
    test "$(pos_of 3) $(pos_of 2) $(pos_of 4)" = "1 2 3"
slidescan move 4 1 >/dev/null
check "move puts D first" test "$(pos_of 4) $(pos_of 3) $(pos_of 2)" = \
    "1 2 3"
slidescan pause 2 >/dev/null
check "pause holds back queued B" test "$(state_of 2)" = paused
slidescan cancel 3 >/dev/null
check "cancel C" test "$(state_of 3)" = cancelled
slidescan requeue 3 >/dev/null
check "requeue puts C at the end of the queue: D C" \
    test "$(pos_of 4) $(pos_of 3)" = "1 2"
slidescan resume 2 >/dev/null
check "resume brings B back at its priority: D C B" \
    test "$(pos_of 4) $(pos_of 3) $(pos_of 2)" = "1 2 3"
check "A is still the scan on the microscope" test "$(state_of 1)" = \
    capturing
slidescan pause >/dev/null
check "pause without a number pauses the running scan" \
    wait_until 20 'test "$(state_of 1)" = paused'
reason=$(sqlite3 "$DB" "SELECT reason FROM scans WHERE id = 1")
check "the pause reason is recorded" test "$reason" = "paused by request"
check "the next queued scan (D) starts" \
    wait_until 20 'test "$(state_of 4)" != queued'
dev=$(slidescan devices)
check "devices names the simulated camera and frame" \
    grep -q "camera: .*simulated camera, 1024x768 px, 0.5 µm/px" <<<"$dev"
for s in 4 2 3; do slidescan cancel $s >/dev/null; done
check "cancelling the running and queued scans empties the queue" \
    wait_until 30 'test "$(state_of 4)" = cancelled'
out=$(slidescan calibrate --stain KI67)
check "calibrate on the idle microscope" \
    grep -q "^calibration [0-9]*: KI67 20x at 600 ms" <<<"$out"

slidescan resume 1 >/dev/null
check "resumed A completes" wait_until 60 'test "$(state_of 1)" = done'
n_planned=$(sqlite3 "$DB" "SELECT COUNT(*) FROM tiles WHERE scan = 1")
n_captured=$(sqlite3 "$DB" "SELECT COUNT(*) FROM tiles WHERE scan = 1 AND \
    state = 'captured'")
check "every planned tile of A captured once ($n_captured/$n_planned)" \
    test "$n_captured" = "$n_planned" -a "$n_planned" -gt 4
check "A's analysis completes" wait_until 60 'test "$(sqlite3 "$DB" \
    "SELECT state FROM analyses WHERE scan = 1")" = done'
out=$(slidescan slides)
check "slides lists all four slides" \
    test "$(grep -cE '^(A|B|C|D) ' <<<"$out")" = 4
out=$(slidescan show A)
check "show gives the image with its µm per pixel" \
    grep -qE "px, 0.5 µm/px, [0-9]+ bytes, sha256 [0-9a-f]{64}" <<<"$out"
check "show gives the analysis numbers" grep -q "tumour .* mm², stroma" \
    <<<"$out"
slidescan reanalyse 1 >/dev/null
check "reanalyse runs the worker again" wait_until 60 'test "$(sqlite3 \
    "$DB" "SELECT attempts || state FROM analyses WHERE scan = 1")" = \
    1done'
sed -i 's/^log_level = info/log_level = notice/' "$CONF"
out=$(slidescan reload)
check "reload applies the new log level" \
    grep -q "applied: daemon.log_level" <<<"$out"
kill -HUP "$DPID"
check "SIGHUP reloads too" wait_until 10 'sqlite3 "$DB" "SELECT action \
    FROM events WHERE uid IS NULL" | grep -q reload'
cp "$CONF" "$T/good.conf"
printf '[daemon]\nworker = %s\n' "$T/no-worker" >>"$CONF"
n=$(wc -l <"$CONF")
out=$(slidescan reload 2>&1)
check "reload to a worker that does not exist is refused (exit 1)" \
    test $? = 1 -a "$out" = "slidescan reload: config: $CONF:$n: [daemon] \
worker: $T/no-worker: No such file or directory; analyses could not run"
cp "$T/good.conf" "$CONF"

# Failures and their exit codes.
slidescan show NOPE >/dev/null 2>&1
check "show of an unknown slide exits 5" test $? = 5
slidescan scan --slide E --stain PAS 2>/dev/null
check "a bad stain exits 2" test $? = 2
out=$(slidescan pause 999 2>&1)
check "pause of an unknown scan exits 5 and says so" \
    test $? = 5 -a "$out" = "slidescan pause: not_found: no scan 999"
slidescan move 1 1 >/dev/null 2>&1
check "moving a done scan exits 1 (conflict)" test $? = 1
slidescan --socket "$T/none.sock" ping >/dev/null 2>&1
SLIDESCAN_SOCKET=$T/none.sock slidescan ping >/dev/null 2>&1
check "no daemon at the socket exits 3" test $? = 3

# Access: the configured group is the test's; other callers are refused.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
    gid=$(getent group "$GROUP" | cut -d: -f3)
    out=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$BUILD/bin/slidescan" ping 2>&1)
    rc=$?
    check "a caller outside the group is refused by the daemon (exit 4)" \
        test $rc = 4
    check "the refusal names the uid and the group" grep -q \
        "refused: uid 65534 is not in group '$GROUP'" <<<"$out"
    out=$(setpriv --reuid=65534 --regid=65534 --groups="$gid" \
        "$BUILD/bin/slidescan" ping 2>&1)
    check "a member of the group is admitted" \
        grep -q "you are uid 65534" <<<"$out"
    check "the refusal is in the audit trail with the caller's uid" \
        test "$(sqlite3 "$DB" "SELECT COUNT(*) FROM events WHERE action = \
        'refused' AND uid = 65534")" -ge 1
    chmod 0660 "$SOCK"
    out=$(setpriv --reuid=65534 --regid=65534 --clear-groups \
        "$BUILD/bin/slidescan" ping 2>&1)
    rc=$?
    check "with mode 0660 the socket itself refuses (exit 4)" \
        test $rc = 4 -a -n "$(grep 'permission denied' <<<"$out")"
else
    skip "access tests need root and setpriv to run as another uid"
fi
check "every action is audited with the caller's uid" test "$(sqlite3 \
    "$DB" "SELECT COUNT(DISTINCT action) FROM events WHERE uid = 0 AND \
    action IN ('scan','move','pause','cancel','requeue','resume', \
    'calibrate','analyse','reload')")" = 9

dtest_stop
check "SIGTERM stops the daemon cleanly (exit 0)" test $? = 0
check "the socket is removed at exit" test ! -e "$SOCK"
dtest_end
