#!/bin/bash
# SPDX-License-Identifier: MIT
# timeout: 120
#
# slidescand's side of Type=notify, seen by a stand-in for systemd: a
# datagram socket with SO_PASSCRED (so each message carries its sender's
# pid, as systemd checks for NotifyAccess=main), NOTIFY_SOCKET pointing at
# it, and WATCHDOG_USEC/WATCHDOG_PID set for a real slidescand on a
# private socket and configuration.  Asserted:
#   - READY=1 arrives with STATUS=, and the control socket answers by then;
#   - a second daemon on the same socket fails: exit 1, no READY=1;
#   - STATUS= follows a scan (slide, state, tiles) and goes back to idle;
#   - WATCHDOG=1 repeats, no gap longer than WATCHDOG_USEC, also while
#     scanning;
#   - SIGHUP gives RELOADING=1 then READY=1;
#   - SIGTERM gives STOPPING=1 and exit status 0;
#   - every message comes from the main pid;
#   - without WATCHDOG_USEC there are no periodic pings (the counting
#     above can see an absence).
. "$(dirname "$0")/../support/daemon_env.sh"

NSOCK=$T/notify.sock
NLOG=$T/notify.log
WD_USEC=2000000
RPID=

# The receiver: one line per datagram, "SECONDS PID MESSAGE" with the
# message's newlines shown as '|'.
cat >"$T/receiver.py" <<'PY'
import os, socket, struct, sys, time
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(path)
out = open(log, "a", buffering=1)
out.write("# listening\n")
while True:
    msg, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = -1
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", data[:12])[0]
    text = msg.decode("utf-8", "replace").rstrip("\n").replace("\n", "|")
    out.write("%.3f %d %s\n" % (time.monotonic(), pid, text))
PY

receiver_start() {
    rm -f "$NSOCK"
    python3 "$T/receiver.py" "$NSOCK" "$NLOG" &
    RPID=$!
    wait_until 10 "grep -q '^# listening' '$NLOG'"
}

receiver_stop() {
    [ -n "$RPID" ] || return 0
    kill -TERM "$RPID" 2>/dev/null
    wait "$RPID" 2>/dev/null
    RPID=
}
trap 'receiver_stop; dtest_cleanup' EXIT

# notify_start [WATCHDOG_USEC]: slidescand with NOTIFY_SOCKET, and the
# watchdog when a period is given; WATCHDOG_PID is its own pid (the shell
# execs into it).
notify_start() {
    local wd=${1:-}
    if [ -n "$wd" ]; then
        NOTIFY_SOCKET=$NSOCK WATCHDOG_USEC=$wd bash -c \
            'export WATCHDOG_PID=$$; exec slidescand -c "$1"' _ "$CONF" \
            >>"$LOG" 2>&1 &
    else
        NOTIFY_SOCKET=$NSOCK slidescand -c "$CONF" >>"$LOG" 2>&1 &
    fi
    DPID=$!
}

msgs() {    # msgs ERE: the notify log lines whose message starts with ERE
    grep -E "^[0-9.]+ -?[0-9]+ $1" "$NLOG"
}

dtest_conf "[analysis]
auto = no"
receiver_start || { nok "notify receiver starts"; dtest_end; exit 1; }
notify_start $WD_USEC
if wait_until 30 "msgs 'READY=1' >/dev/null"; then
    ready=$(msgs 'READY=1' | head -1)
    ping_rc=1
    slidescan ping >/dev/null 2>&1 && ping_rc=0
    ok "READY=1 received: ${ready#* }"
else
    nok "READY=1 within 30 s"
    dtest_end
    exit 1
fi
check "READY=1 comes with STATUS=idle; 0 queued" \
    grep -q 'READY=1|STATUS=idle; 0 queued$' <<<"$ready"
check "the control socket answers once READY=1 was sent" test $ping_rc = 0

# A second daemon on the same socket must fail its start: exit 1, and no
# READY=1 (systemd would otherwise count a dead service as started).  Its
# own data directory, so that the socket is what stops it (the data
# directory's lock has daemon_datadir_lock.sh).
sed "s|^data_dir = .*|data_dir = $T/data2|" "$CONF" >"$T/second.conf"
NOTIFY_SOCKET=$NSOCK slidescand -c "$T/second.conf" >"$T/second.log" 2>&1 &
second=$!
wait $second
rc=$?
check "a second slidescand on the same socket exits 1 (exit $rc)" test $rc = 1
check "... naming the cause" grep -q "another slidescand is running" \
    "$T/second.log"
check "... without READY=1" test -z "$(awk -v p=$second '$2 == p' "$NLOG")"

t_scan=$(awk '{ print $1 }' <<<"$(tail -1 "$NLOG")")
out=$(slidescan scan --slide NOTIFY-1 --stain HE \
    --image phantom:HE:w_mm=1.6:h_mm=1.2)
check "a scan is queued" grep -q '^queued scan 1' <<<"$out"
scanning='STATUS=scanning NOTIFY-1 \(scan 1\) capturing'
check "STATUS= shows the scan capturing with its tiles" wait_until 90 \
    "msgs '$scanning [0-9]+/[0-9]+ tiles; 0 queued' >/dev/null"
check "STATUS= counts tiles up to the total" wait_until 90 \
    "msgs '$scanning ([0-9]+)/\1 tiles' >/dev/null"
check "STATUS= goes back to idle after the scan" wait_until 60 \
    "msgs 'STATUS=idle; 0 queued' | awk '\$1 > $t_scan' | grep -q ."
slidescan status --once 2>/dev/null | sed 's/^/#   status: /'

kill -HUP "$DPID"
reloaded() {  # a READY=1 after the last RELOADING=1
    awk '$3 == "RELOADING=1" { r = NR } $3 ~ /^READY=1/ && r { ok = NR > r }
         END { exit !ok }' "$NLOG"
}
check "SIGHUP: RELOADING=1 then READY=1" wait_until 10 reloaded

dpid=$DPID
kill -TERM "$DPID"
wait "$DPID"
rc=$?
DPID=
check "SIGTERM: slidescand exits with status 0" test $rc = 0
check "SIGTERM: STOPPING=1 was sent" wait_until 5 "msgs 'STOPPING=1'"

# The watchdog over the whole run: count and the largest gap.
read -r n_wd gap_s <<<"$(msgs 'WATCHDOG=1$' 2>/dev/null | awk '
    { if (n++) { g = $1 - t; if (g > max) max = g } t = $1 }
    END { printf "%d %.3f\n", n, max }')"
run_s=$(awk 'NR == 2 { a = $1 } { b = $1 } END { printf "%.1f", b - a }' \
    "$NLOG")
echo "# $n_wd WATCHDOG=1 in $run_s s, largest gap $gap_s s" \
     "(WATCHDOG_USEC=$WD_USEC)"
check "WATCHDOG=1 repeats: $n_wd pings, at least one per 2 s of $run_s s" \
    awk -v n="$n_wd" -v t="$run_s" 'BEGIN { exit !(n >= 2 && n >= int(t / 2)) }'
check "no watchdog gap ($gap_s s) reaches WATCHDOG_USEC" \
    awk -v g="$gap_s" -v u="$WD_USEC" -v n="$n_wd" \
    'BEGIN { exit !(n >= 2 && g < u / 1e6) }'
others=$(awk -v p="$dpid" '$2 != p' <"$NLOG" | grep -vc '^#')
check "all $(grep -vc '^#' "$NLOG") messages come from the main pid" \
    test "$others" = 0

# Without a watchdog: READY=1 and one ping with it, then silence.
: >"$NLOG"
receiver_stop
receiver_start
notify_start
wait_until 30 "msgs 'READY=1' >/dev/null"
sleep 3
n=$(msgs 'WATCHDOG=1$' | wc -l)
check "without WATCHDOG_USEC no periodic pings ($n in 3 s after READY)" \
    test "$n" -le 1
dtest_stop

receiver_stop
dtest_end
