#!/bin/bash
# SPDX-License-Identifier: MIT
#
# WSI writer benchmark: one run, same input, slidescan against vips.
#
# The input is CMU-1-Small-Region replicated 18 × 10 (39960 × 29670 px,
# 3.6 GB uncompressed), made once as a vips .v file and read into the
# page cache before timing.  Timed, each under /usr/bin/time -v:
#   vips tiffsave MOSAIC.v --tile --pyramid --compression jpeg --Q 90
#        --tile-width 256 --tile-height 256 --bigtiff
#   bench_wsi write MOSAIC.v OUT.svs       (storage/wsi.h, quality 90)
#   bench_wsi assemble CMU.v 18 10 OUT.svs (the same, rows built on the
#                                           fly from the one tile)
# Before each timed run the disk is synced (untimed), so no run pays for
# the writeback of the one before; ours includes its own fsync, vips
# writes without one.
# Reported: wall time, CPU time (user + sys) and peak RSS of both, their
# ratios, and the ratio to the JPEG encoding floor (libjpeg-turbo alone
# encoding the same tiles, CPU time of one core divided by the cores).
# The load average is printed too: other work on the machine stretches
# wall times, while CPU times and RSS stay comparable.  WSI_BENCH_RUNS=N
# runs the pair N times, interleaved, and keeps each one's fastest run.
#
# Needs ../shared/data, vips (libvips-tools) and about 5 GB free under
# $WSI_BENCH_DIR (default /tmp/slidescan-bench-wsi); the mosaic is kept
# there for the next run.
set -u

root=${SLIDESCAN_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
build=${SLIDESCAN_BUILD:-$root/build}
data=${SLIDESCAN_DATA:-$root/../shared/data}
dir=${WSI_BENCH_DIR:-/tmp/slidescan-bench-wsi}
bin=$build/bench/bench_wsi
src=$data/wsi/CMU-1-Small-Region.svs

say() { echo "wsi: $*"; }
if [ ! -x "$bin" ]; then
    say "SKIP $bin is not built (make benches)"
    exit 0
fi
if [ ! -f "$src" ]; then
    say "SKIP $src is absent; synthetic run only"
    "$bin"
    exit $?
fi
for t in vips /usr/bin/time; do
    command -v $t >/dev/null || { say "SKIP $t is not installed"; exit 0; }
done
mkdir -p "$dir"
free_kb=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
if [ ! -f "$dir/mosaic.v" ] && [ "$free_kb" -lt 6000000 ]; then
    say "SKIP less than 6 GB free in $dir"
    exit 0
fi

if [ ! -f "$dir/cmu.v" ]; then
    vips extract_band "$src" "$dir/cmu.v" 0 --n 3 ||
        { say "cannot read $src"; exit 1; }
fi
if [ ! -f "$dir/mosaic.v" ]; then
    say "making the 18 x 10 mosaic once (not timed)"
    vips replicate "$dir/cmu.v" "$dir/mosaic.v" 18 10 ||
        { say "cannot make the mosaic"; exit 1; }
fi
rm -f "$dir/vips.tif" "$dir/ours.svs" "$dir/ours2.svs"
cat "$dir/mosaic.v" >/dev/null

# field NAME FILE: a value from /usr/bin/time -v output.
field() { sed -n "s/^[[:space:]]*$1: //p" "$2"; }
seconds() {
    echo "$1" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i;
                          print s }'
}
measure() {
    local name=$1 log=$dir/$1.time wall
    shift
    # Each run starts with nothing of the previous one waiting to reach
    # the disk: vips does not fsync its file, and its writeback would
    # otherwise land on whatever runs next.  Not timed.
    sync
    /usr/bin/time -v "$@" >"$dir/$name.out" 2>"$log" ||
        { say "$name failed:"; tail -5 "$log"; exit 1; }
    wall=$(field 'Elapsed (wall clock) time (h:mm:ss or m:ss)' "$log")
    eval "${name}_wall=$(seconds "$wall")"
    eval "${name}_cpu=$(awk -v u="$(field 'User time (seconds)' "$log")" \
        -v s="$(field 'System time (seconds)' "$log")" \
        'BEGIN { print u + s }')"
    eval "${name}_rss=$(field 'Maximum resident set size (kbytes)' "$log")"
}
# line NAME WALL CPU RSS_KB [FILE]
line() {
    printf 'wsi: %-26s wall %6.2f s  cpu %6.2f s  peak RSS %6.1f MB%s\n' \
        "$1" "$2" "$3" "$(echo "$4" | awk '{ print $1 / 1024 }')" \
        "${5:+  $(stat -c %s "$5") bytes}"
}

# best NAME: keeps the fastest of the repeated runs of NAME (the least
# disturbed by other work), with the largest peak RSS seen.
best() {
    local w=${1}_wall c=${1}_cpu r=${1}_rss bw=best_${1}_wall
    local bc=best_${1}_cpu br=best_${1}_rss
    if [ -z "${!bw:-}" ] ||
        awk -v a="${!w}" -v b="${!bw}" 'BEGIN { exit !(a < b) }'; then
        printf -v "$bw" '%s' "${!w}"
        printf -v "$bc" '%s' "${!c}"
    fi
    if [ "${!br:-0}" -lt "${!r}" ]; then
        printf -v "$br" '%s' "${!r}"
    fi
}

runs=${WSI_BENCH_RUNS:-1}
say "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $runs run(s)"
for run in $(seq "$runs"); do
    rm -f "$dir/vips.tif" "$dir/ours.svs" "$dir/ours2.svs"
    measure vips vips tiffsave "$dir/mosaic.v" "$dir/vips.tif" --tile \
        --pyramid --compression jpeg --Q 90 --tile-width 256 \
        --tile-height 256 --bigtiff
    measure ours "$bin" write "$dir/mosaic.v" "$dir/ours.svs" 90 444
    measure asm "$bin" assemble "$dir/cmu.v" 18 10 "$dir/ours2.svs" 90 444
    best vips
    best ours
    best asm
done
for n in vips ours asm; do
    for f in wall cpu rss; do
        v=best_${n}_$f
        printf -v "${n}_$f" '%s' "${!v}"
    done
done
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
floor=$("$bin" floor "$dir/mosaic.v" 90 444)
floor_s=$(echo "$floor" | sed -n 's/.*core, \([0-9.]*\) s on.*/\1/p')
floor_cpu=$(echo "$floor" | sed -n 's/.*levels \([0-9.]*\) s on one.*/\1/p')

line "vips tiffsave:" "$vips_wall" "$vips_cpu" "$vips_rss" "$dir/vips.tif"
line "slidescan (from .v):" "$ours_wall" "$ours_cpu" "$ours_rss" \
    "$dir/ours.svs"
line "slidescan (tile in memory):" "$asm_wall" "$asm_cpu" "$asm_rss"
say "JPEG $floor"
awk -v vw="$vips_wall" -v ow="$ours_wall" -v vc="$vips_cpu" \
    -v oc="$ours_cpu" -v vr="$vips_rss" -v or="$ours_rss" -v fs="$floor_s" \
    -v fc="$floor_cpu" 'BEGIN {
    printf "wsi: speed vs vips: %.2fx wall, %.2fx cpu (goal >= 3x)\n",
        vw / ow, vc / oc
    printf "wsi: peak RSS vs vips: %.2f (goal <= 1)\n", or / vr
    printf "wsi: vs JPEG floor: %.2fx wall, %.2fx cpu (1 = encoding only)\n",
        ow / fs, oc / fc
}'
if command -v openslide-show-properties >/dev/null; then
    say "ours through OpenSlide: $(openslide-show-properties "$dir/ours.svs" |
        grep -E "openslide.(vendor|mpp-x|level-count)" | tr '\n' ' ')"
fi
rm -f "$dir/vips.tif" "$dir/ours.svs" "$dir/ours2.svs"
