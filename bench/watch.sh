#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Watch benchmark: does streaming events to many watchers slow a scan?
# Two private slidescand on the simulated microscope (fast clock, 1024 x
# 768 sensor, analysis off) scan the same phantom at the same time, each
# capture phase 20 s or more: one unwatched, the other with WATCHERS (50)
# connections watching (bench_watch.c: each reads and parses every event,
# as `slidescan watch --json` does).  Running both at once exposes them to
# the same background load, which on a shared machine varies far more
# between consecutive runs than the effect measured.  Each daemon, with
# its bench_watch, is pinned to a CPU of its own (the watchers' reading
# costs the watched side, as a client on the scanner's machine would),
# and the CPUs are swapped every round to cancel any difference between
# them.  Prints tiles per second of both sides in every round, the ratio
# watched / unwatched per round and its mean.  The goal: a mean ratio of
# at least 0.95, and no watcher loses an event.  Exit status 1 when
# either fails.  Also printed, as the measure a busy machine does not
# distort: CPU time per tile of each side (the daemon plus bench_watch:
# its catalogue polling on both sides, the watchers' reading on the
# watched one) and its ratio.
#
#   bench/watch.sh [WATCHERS] [ROUNDS] [PHANTOM_W_MM] [PHANTOM_H_MM]
set -u

root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
watchers=${1:-50}
rounds=${2:-2}
w_mm=${3:-5}
h_mm=${4:-4}
goal=0.95
bin=$build/bin
bench=$build/bench/bench_watch
for f in "$bin/slidescand" "$bin/slidescan" "$bench"; do
    [ -x "$f" ] || { echo "watch: $f is missing (make benches)" >&2; exit 1; }
done
pin=1
[ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null || pin=0

work=$(mktemp -d "${TMPDIR:-/tmp}/slidescan-bench-watch.XXXXXX")
declare -A dpid
cleanup() {
    local p
    for p in "${dpid[@]}"; do
        kill -TERM "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

# start SIDE: a daemon of its own for side u (unwatched) or w (watched).
start() {
    local d=$work/$1
    mkdir -p "$d"
    cat >"$d/slidescan.conf" <<CONF
[daemon]
socket = $d/s.sock
data_dir = $d/data
group =
log_level = notice
[simulator]
time_scale = 0
sensor_w = 1024
sensor_h = 768
[scan]
calib_frames = 2
[analysis]
auto = no
CONF
    "$bin/slidescand" -c "$d/slidescan.conf" >"$d/daemon.log" 2>&1 &
    dpid[$1]=$!
    for _ in $(seq 100); do
        SLIDESCAN_SOCKET=$d/s.sock "$bin/slidescan" ping >/dev/null 2>&1 &&
            break
        sleep 0.1
    done
    # A calibration first, so that no measured scan pays for one.
    SLIDESCAN_SOCKET=$d/s.sock "$bin/slidescan" calibrate --stain HE \
        >/dev/null && return 0
    echo "watch: slidescand ($1) did not start or calibrate; its log:" >&2
    tail -20 "$d/daemon.log" >&2
    exit 1
}

# side SIDE CPU ROUND: pins the side's daemon (every thread) and runs one
# measured scan there, in the background, output in SIDE.out.
side() {
    local d=$work/$1 n=0 cpu=()
    [ "$1" = w ] && n=$watchers
    if [ $pin = 1 ]; then
        taskset -a -p -c "$2" "${dpid[$1]}" >/dev/null
        cpu=(taskset -c "$2")
    fi
    "${cpu[@]}" "$bench" "$d/s.sock" "$d/data/catalogue.db" \
        "WATCH-$1-$3" "$image" "$n" "${dpid[$1]}" >"$work/$1.out" 2>&1 &
}

field() { sed -n "s/.*[ ^]$1=\([0-9.]*\).*/\1/p" "$work/$2.out"; }

start u
start w
image="phantom:HE:w_mm=$w_mm:h_mm=$h_mm:seed=7"
echo "watch: $image, $watchers watchers, $rounds rounds, $(nproc) CPUs" \
     "(pinned: $([ $pin = 1 ] && echo yes || echo no)), load" \
     "$(cut -d' ' -f1-3 /proc/loadavg)"
lost=0
short=0
ratios=()
cpu_ratios=()
for i in $(seq "$rounds"); do
    side u $(((i + 1) % 2)) "$i"
    pu=$!
    side w $((i % 2)) "$i"
    pw=$!
    wait $pu; ru=$?
    wait $pw; rw=$?
    sed 's/^/  unwatched: /' "$work/u.out"
    sed 's/^/  watched:   /' "$work/w.out"
    if [ $ru != 0 ] || [ $rw != 0 ]; then
        echo "watch: round $i failed; daemon logs:" >&2
        tail -10 "$work/u/daemon.log" "$work/w/daemon.log" >&2
        exit 1
    fi
    u=$(field tiles_per_s u)
    w=$(field tiles_per_s w)
    tiles=$(field tiles w)
    got=$(field progress_min w)
    lost=$((lost + $(field dropped w) + tiles - got))
    for s in u w; do
        awk -v c="$(field capture_s $s)" 'BEGIN { exit !(c < 20) }' &&
            short=1
    done
    ratios+=("$(awk -v w="$w" -v u="$u" 'BEGIN { printf "%.4f", w / u }')")
    cpu_ratios+=("$(awk -v du="$(field daemon_cpu_ms_per_tile u)" \
        -v ru="$(field watchers_cpu_ms_per_tile u)" \
        -v dw="$(field daemon_cpu_ms_per_tile w)" \
        -v rw="$(field watchers_cpu_ms_per_tile w)" \
        'BEGIN { printf "%.4f", (dw + rw) / (du + ru) }')")
    echo "  round $i: unwatched $u tiles/s, watched $w tiles/s," \
         "ratio ${ratios[-1]}; CPU per tile watched / unwatched" \
         "${cpu_ratios[-1]}"
done
[ $short = 1 ] &&
    echo "watch: a capture took under 20 s: give a bigger phantom"
awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v n="$(nproc)" \
    'BEGIN { exit !(l > n) }' &&
    echo "watch: load average above the CPU count: the wall-clock rates" \
         "follow the scheduler's share, trust the CPU ratio more (or give" \
         "more rounds)"

cpu_mean=$(printf '%s\n' "${cpu_ratios[@]}" |
    awk '{ s += $1 } END { printf "%.3f", s / NR }')
printf '%s\n' "${ratios[@]}" | awk -v g="$goal" -v lost="$lost" \
    -v n="$watchers" -v cpu="$cpu_mean" '
    { s += $1; if (NR == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1 }
    END {
        m = s / NR
        printf "watch: ratio watched by %d / unwatched: mean %.3f of %d " \
               "rounds (%.3f .. %.3f), goal >= %.2f\n", n, m, NR, lo, hi, g
        printf "watch: CPU time per tile (daemon + bench_watch), watched " \
               "/ unwatched: mean %.3f\n", cpu
        printf "watch: progress events lost by watchers: %d\n", lost
        ok = m >= g && lost == 0
        print ok ? "watch: PASS" : "watch: FAIL"
        exit !ok
    }'
