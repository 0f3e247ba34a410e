#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 90
#
# One slidescand per data directory.  With a daemon running, a second one
# on the same data directory but its own socket exits 1 with "data
# directory DIR is in use by slidescand pid N", sends no READY=1, makes no
# socket, and the first keeps scanning.  `slidescand --check` notes the
# lock without failing.  Once the first stops, the second starts (READY=1,
# its pid in the lock file); after a SIGKILL the stale lock file does not
# block the next start.  A daemon on another data directory that shares
# the first's catalogue is refused the same way.
. "$(dirname "$0")/../support/daemon_env.sh"

NSOCK=$T/notify.sock
NLOG=$T/notify.log
RPID=
cat >"$T/receiver.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
out = open(sys.argv[2], "a", buffering=1)
out.write("# listening\n")
while True:
    out.write(s.recv(4096).decode("utf-8", "replace").replace("\n", "|")
              + "\n")
PY
python3 "$T/receiver.py" "$NSOCK" "$NLOG" &
RPID=$!
trap 'kill -TERM "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null;
      [ -n "${BPID:-}" ] && kill -KILL "$BPID" 2>/dev/null; dtest_cleanup' EXIT
wait_until 10 "grep -q '^# listening' '$NLOG'"

dtest_conf
dtest_start || { nok "slidescand starts"; dtest_end; exit 1; }
A=$DPID
check "the lock file holds the first daemon's pid" \
    test "$(cat "$DATA/slidescand.lock")" = "$A"
SOCK_B=$T/b.sock
sed "s|^socket = .*|socket = $SOCK_B|" "$CONF" >"$T/b.conf"

NOTIFY_SOCKET=$NSOCK timeout 20 slidescand -c "$T/b.conf" >"$T/b.out" 2>&1
rc=$?
echo "# $(cat "$T/b.out")"
check "a second slidescand on the same data directory exits 1 ($rc)" \
    test "$rc" = 1
check "... saying the data directory is in use by the first's pid" \
    grep -qF "data directory $DATA is in use by slidescand pid $A" \
    "$T/b.out"
check "... without READY=1" eval '! grep -q READY=1 "$NLOG"'
check "... and without making its socket" test ! -e "$SOCK_B"
check "the lock file still holds the first daemon's pid" \
    test "$(cat "$DATA/slidescand.lock")" = "$A"

out=$(slidescand --check -c "$T/b.conf" 2>&1)
rc=$?
echo "# $out"
want="note: data directory $DATA is in use by slidescand pid $A ("
check "--check passes (exit $rc) and notes the running daemon" \
    eval '[ $rc = 0 ] && [[ $out == *"$want"* ]]'

# A daemon with a data directory of its own but the first's catalogue
# ([daemon] catalogue) would share its scans just as well: refused,
# naming the catalogue; --check notes it.
mkdir -p "$T/c-data"
sed -e "s|^socket = .*|socket = $T/c.sock|" \
    -e "s|^data_dir = .*|data_dir = $T/c-data\ncatalogue = $DATA/catalogue.db|" \
    "$CONF" >"$T/c.conf"
timeout 20 slidescand -c "$T/c.conf" >"$T/c.out" 2>&1
rc=$?
echo "# $(cat "$T/c.out")"
check "a second slidescand sharing the catalogue exits 1 ($rc)" \
    test "$rc" = 1
check "... saying the catalogue is in use by the first's pid" \
    grep -qF "catalogue $DATA/catalogue.db is in use by slidescand pid $A" \
    "$T/c.out"
check "... without making its socket" test ! -e "$T/c.sock"
out=$(slidescand --check -c "$T/c.conf" 2>&1)
check "--check notes the catalogue in use" \
    grep -qF "note: catalogue $DATA/catalogue.db is in use" <<<"$out"

# A small section (9 tiles; the phantom's default 4 x 3 mm has 53): the
# scan only shows the first daemon still at work.
slidescan scan --slide L1 --stain HE \
    --image phantom:HE:seed=11:w_mm=1.2:h_mm=0.9 >/dev/null
check "the first daemon finishes a scan" \
    wait_until 60 '[ "$(scan_state 1)" = done ]'
check "the first daemon stops on SIGTERM" dtest_stop

NOTIFY_SOCKET=$NSOCK slidescand -c "$T/b.conf" >>"$LOG" 2>&1 &
BPID=$!
check "once it is stopped, the second starts and sends READY=1" \
    wait_until 20 'grep -q READY=1 "$NLOG"'
check "the lock file holds the second daemon's pid" \
    test "$(cat "$DATA/slidescand.lock")" = "$BPID"
kill -KILL "$BPID"
wait "$BPID" 2>/dev/null
BPID=
check "after a SIGKILL the stale lock file does not block a start" \
    dtest_start
check "the lock file holds the new daemon's pid" \
    test "$(cat "$DATA/slidescand.lock")" = "$DPID"
check "slidescand stops on SIGTERM" dtest_stop
dtest_end
