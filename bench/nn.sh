#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The CNN engine against PyTorch on the CPU, in one run: the same U-Net
# (bench_nn's default, 4 levels, 16..128 channels, batch norm; its JSON is
# handed to tools/nn/bench_torch.py), the same tile, batches and thread
# count.  Measures inference (batch NN_BENCH_BATCH, default 1) and one
# training step (forward, cross-entropy, backward, Adam; batch
# NN_BENCH_TRAIN_BATCH, default 2, the lab's batch size) on
# NN_BENCH_TILE x NN_BENCH_TILE tiles (default 512), NN_BENCH_THREADS
# threads (default 2).  The two programs take turns for NN_BENCH_ROUNDS
# rounds (default 3) and each keeps its best time, so load from other
# processes on the machine hurts both alike.  Prints the engine's GFLOP/s
# beside OpenBLAS's sgemm rate measured in the same run, and the ratios.
# Without python3-torch it prints the engine's numbers only.
set -u

root=${SLIDESCAN_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
build=${SLIDESCAN_BUILD:-$root/build}
bench=$build/bench/bench_nn
py=/usr/bin/python3
tile=${NN_BENCH_TILE:-512}
batch=${NN_BENCH_BATCH:-1}
tbatch=${NN_BENCH_TRAIN_BATCH:-2}
threads=${NN_BENCH_THREADS:-2}
rounds=${NN_BENCH_ROUNDS:-3}
iters=${NN_BENCH_ITERS:-3}

if [ ! -x "$bench" ]; then
    echo "nn.sh: $bench is not built (make benches)" >&2
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nn-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$bench" --print-arch >"$tmp/unet.json" || exit 1

args=(--tile "$tile" --batch "$batch" --train-batch "$tbatch"
      --threads "$threads" --iters "$iters")
have_torch=0
"$py" -c 'import torch' 2>/dev/null && have_torch=1

# best KEY FILE...: the smallest value of KEY over the files
best() {
    local key=$1
    shift
    awk -v k="$key" '$1 == k && (b == "" || $2 < b) { b = $2 }
                     END { print b }' "$@"
}

# most KEY FILE...: the largest value of KEY over the files
most() {
    local key=$1
    shift
    awk -v k="$key" '$1 == k && $2 > b { b = $2 } END { print b }' "$@"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
    "$bench" --arch "$tmp/unet.json" "${args[@]}" >"$tmp/nn.$r" || exit 1
    if [ $have_torch = 1 ]; then
        "$py" "$root/tools/nn/bench_torch.py" --arch "$tmp/unet.json" \
            "${args[@]}" >"$tmp/torch.$r" || exit 1
    fi
done
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

nn_files=("$tmp"/nn.*)
grep -E '^(threads|tile|batch|train_batch|params|gflop_per_image) ' \
    "${nn_files[0]}"
sg=$(most sgemm_gflops "${nn_files[@]}")
sg1=$(most sgemm_gflops_1thread "${nn_files[@]}")
gf=$(awk '$1 == "gflop_per_image" { print $2; exit }' "${nn_files[0]}")
inf=$(best infer_ms "${nn_files[@]}")
trn=$(best train_step_ms "${nn_files[@]}")
infc=$(best infer_cpu_ms "${nn_files[@]}")
trnc=$(best train_step_cpu_ms "${nn_files[@]}")
awk -v sg="$sg" -v sg1="$sg1" -v gf="$gf" -v inf="$inf" -v trn="$trn" \
    -v b="$batch" -v tb="$tbatch" -v infc="$infc" -v trnc="$trnc" 'BEGIN {
    printf "openblas_sgemm_gflops %.1f (1 thread %.1f)\n", sg, sg1
    printf "nn_infer_ms %.1f (cpu %.1f)  %.2f images/s  %.1f GFLOP/s",
        inf, infc, b * 1000 / inf, gf * b / inf * 1000
    printf " = %.2f x sgemm\n", gf * b / inf * 1000 / sg
    printf "nn_train_step_ms %.1f (cpu %.1f)  %.1f GFLOP/s = %.2f x sgemm\n",
        trn, trnc, 3 * gf * tb / trn * 1000, 3 * gf * tb / trn * 1000 / sg
}'
if [ $have_torch = 0 ]; then
    echo "torch: python3-torch not installed, no comparison"
    exit 0
fi
t_files=("$tmp"/torch.*)
tinf=$(best torch_infer_ms "${t_files[@]}")
ttrn=$(best torch_train_step_ms "${t_files[@]}")
tinfc=$(best torch_infer_cpu_ms "${t_files[@]}")
ttrnc=$(best torch_train_step_cpu_ms "${t_files[@]}")
grep -E '^torch_(version|threads|mkldnn) ' "${t_files[0]}"
awk -v inf="$inf" -v trn="$trn" -v tinf="$tinf" -v ttrn="$ttrn" \
    -v tinfc="$tinfc" -v ttrnc="$ttrnc" 'BEGIN {
    printf "torch_infer_ms %.1f (cpu %.1f)\n", tinf, tinfc
    printf "torch_train_step_ms %.1f (cpu %.1f)\n", ttrn, ttrnc
    printf "ratio_infer %.2f (nn speed / torch speed; goal >= 1.2)\n",
        tinf / inf
    printf "ratio_train_step %.2f (goal >= 1.0)\n", ttrn / trn
}'
