#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Analysis benchmark: a 15 × 15 mm phantom section at 20x is written to a
# file, then analysed end to end with the default model; the goal is at
# most 10 minutes on a 2-core machine.  Prints throughput in mm²/min and
# megapixels per second (bench_analysis.c).
#
#   bench/analysis.sh [SIZE_MM] [MODEL]
set -eu
build=${BUILD:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) build="$root/$build" ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/slidescan-bench-analysis.XXXXXX")
trap 'rm -rf "$work"' EXIT
SLIDESCAN_ROOT=$root TMPDIR=$work "$build/bench/bench_analysis" "$@"
