#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The CNN engine against PyTorch (Debian's python3-torch): PyTorch runs a
# small U-Net that uses every layer type (eval and training forward,
# weighted cross-entropy with an ignored label, backward, one step of
# Adam, AdamW and SGD, soft Dice) and writes every tensor
# (tools/nn/torch_ref.py); the engine runs the same and compares
# (tests/unit/test_nn_torch.c): max|engine - torch| / max|torch| <= 1e-4
# for every tensor.  Skips when python3-torch is not installed.
#
# timeout: 300
set -u

root=${SLIDESCAN_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SLIDESCAN_BUILD:-$root/build}
py=/usr/bin/python3

if ! "$py" -c 'import torch' 2>/dev/null; then
    echo "ok 1 # SKIP python3-torch is not installed" \
         "(apt-get install python3-torch)"
    exit 0
fi
if [ ! -x "$build/tests/test_nn_torch" ]; then
    echo "not ok 1 - $build/tests/test_nn_torch is not built"
    exit 1
fi

ref=$(mktemp -d "${TMPDIR:-/tmp}/nn-torch.XXXXXX")
trap 'rm -rf "$ref"' EXIT

if ! "$py" "$root/tools/nn/torch_ref.py" "$ref"; then
    echo "not ok 1 - tools/nn/torch_ref.py failed"
    exit 1
fi
NN_TORCH_REF=$ref CMOCKA_MESSAGE_OUTPUT=TAP "$build/tests/test_nn_torch"
