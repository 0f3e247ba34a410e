# SPDX-License-Identifier: MIT
# shellcheck shell=bash
#
# Sourced by tests/e2e/daemon_*.sh: a private slidescand for one test.
# Everything lives in a fresh directory under $TMPDIR: the configuration,
# the unix socket, the data directory and the daemon's log.  The daemon is
# started and stopped by PID only; an EXIT trap kills the one this script
# started, and nothing else.
#
#   dtest_public_socket      put the socket where other uids can reach it
#   dtest_conf [EXTRA_INI]   write the configuration (EXTRA_INI appended)
#   dtest_start              start slidescand, wait until it answers
#   dtest_stop               SIGTERM, wait for the exit
#   ok/nok/skip/check        TAP lines; dtest_end prints the plan count
#   wait_until SECONDS 'SHELL CODE'   re-evaluate the code until it
#                            succeeds or time is up (× 4 under sanitizers)

set -u
ROOT=${SLIDESCAN_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SLIDESCAN_BUILD:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
PATH="$BUILD/bin:$PATH"
T=$(mktemp -d "${TMPDIR:-/tmp}/dt.XXXXXX")
SOCK=$T/s.sock
DATA=$T/data
CONF=$T/slidescan.conf
LOG=$T/daemon.log
DB=$DATA/catalogue.db
export SLIDESCAN_SOCKET=$SOCK
DPID=
tap_n=0
tap_failed=0

ok() { tap_n=$((tap_n + 1)); echo "ok $tap_n - $*"; }
nok() {
    tap_n=$((tap_n + 1)); tap_failed=$((tap_failed + 1))
    echo "not ok $tap_n - $*"
}
skip() { tap_n=$((tap_n + 1)); echo "ok $tap_n # SKIP $*"; }
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else nok "$what"; fi
}

# Sanitizer builds run several times slower: waits stretch accordingly.
SLOW=1
[ -n "${SLIDESCAN_SANITIZE:-}" ] && SLOW=4

wait_until() {
    local limit=$(($1 * SLOW)) t0=$SECONDS
    shift
    while ! eval "$*" >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -ge "$limit" ] && return 1
        sleep 0.2
    done
}

# A socket directory every uid can traverse (the test's own directory is
# private), for tests that run the client as another user.
SOCKDIR=
dtest_public_socket() {
    SOCKDIR=$(mktemp -d /tmp/slidescan-sock.XXXXXX)
    chmod 755 "$SOCKDIR"
    SOCK=$SOCKDIR/s.sock
    export SLIDESCAN_SOCKET=$SOCK
}

# conf_merge FILE 'INI TEXT': FILE with INI TEXT after it, less the lines
# of FILE that set a key INI TEXT sets again (the daemon refuses a key set
# twice).
conf_merge() {
    awk -v extra="$2" '
        function key(line) {
            if (line ~ /^[ \t]*\[/) {
                sec = line; gsub(/^[ \t]*\[|\][ \t]*$/, "", sec)
                return ""
            }
            if (line !~ /=/ || line ~ /^[ \t]*[;#]/)
                return ""
            k = line; sub(/[ \t]*=.*/, "", k); gsub(/^[ \t]+/, "", k)
            return sec "." k
        }
        BEGIN {
            n = split(extra, e, "\n")
            for (i = 1; i <= n; i++)
                if ((k = key(e[i])) != "")
                    set[k] = 1
            sec = ""
        }
        { k = key($0); if (k == "" || !(k in set)) print }
        END { print extra }' "$1"
}

# dtest_conf [INI TEXT]: the test configuration, the defaults below with
# INI TEXT merged in (conf_merge).  The defaults are the fast simulated
# microscope: no real-time sleeping, a 1024 × 768 sensor (a quarter of
# the default) so frames render quickly.
dtest_conf() {
    conf_merge - "${1:-}" >"$CONF" <<CONF
[daemon]
socket = $SOCK
data_dir = $DATA
group =
device_retry_s = 1
[microscope]
phantom_w_mm = 1.0
phantom_h_mm = 0.8
[simulator]
time_scale = 0
sensor_w = 1024
sensor_h = 768
[scan]
calib_frames = 2
CONF
}

dtest_start() {
    slidescand -c "$CONF" >>"$LOG" 2>&1 &
    DPID=$!
    if ! wait_until 20 slidescan ping; then
        echo "# slidescand did not answer; its log:"
        sed 's/^/#   /' "$LOG" | tail -20
        return 1
    fi
}

dtest_stop() {
    [ -n "$DPID" ] || return 0
    kill -TERM "$DPID" 2>/dev/null
    wait "$DPID" 2>/dev/null
    local rc=$?
    DPID=
    return $rc
}

dtest_cleanup() {
    if [ -n "$DPID" ]; then
        kill -KILL "$DPID" 2>/dev/null
        wait "$DPID" 2>/dev/null
    fi
    if [ "$tap_failed" -gt 0 ] && [ -f "$LOG" ]; then
        echo "# daemon log (last 40 lines):"
        tail -40 "$LOG" | sed 's/^/#   /'
    fi
    [ -n "$SOCKDIR" ] && rm -rf "$SOCKDIR"
    [ -n "${SLIDESCAN_KEEP_TMP:-}" ] || rm -rf "$T"
}
trap dtest_cleanup EXIT

dtest_end() {
    echo "1..$tap_n"
    [ "$tap_failed" = 0 ]
}

# The state of scan $1 from the catalogue.
scan_state() {
    sqlite3 "$DB" "SELECT state FROM scans WHERE id = $1"
}
