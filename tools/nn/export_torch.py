# SPDX-License-Identifier: MIT
"""Exports a PyTorch model's weights for the slidescan CNN engine.

    export_torch.py --arch ARCH.json --state STATE.pt --out MODEL.safetensors

ARCH.json is the slidescan-nn architecture (worker/nn/README.md), with each
layer named after its module path in the PyTorch model ("enc1.conv" for
self.enc1.conv), so that the model's state_dict() keys are the engine's
tensor names.  STATE.pt is torch.save(model.state_dict(), ...).  The
script checks that every parameter the architecture declares is in the
state dict with the right shape and that nothing else is (BatchNorm's
num_batches_tracked aside), then writes MODEL.safetensors with the
architecture in its metadata; nn_model_load(NULL, MODEL.safetensors)
loads it.  Runs with Debian's python3-torch and the standard library.
"""

import argparse
import json
import os
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import nnjson  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    with open(a.arch) as f:
        arch = json.load(f)
    want = nnjson.build(arch).engine_state()
    state = torch.load(a.state, map_location="cpu")
    if not isinstance(state, dict):
        state = state.state_dict()
    got = {k: v for k, v in state.items()
           if not k.endswith("num_batches_tracked")}
    errors = []
    for name, t in want.items():
        if name not in got:
            errors.append("%s: missing from %s" % (name, a.state))
        elif tuple(got[name].shape) != tuple(t.shape):
            errors.append("%s: shape %s, the architecture needs %s" %
                          (name, list(got[name].shape), list(t.shape)))
    for name in got:
        if name not in want:
            errors.append("%s: not a parameter of the architecture" % name)
    if errors:
        for e in errors:
            print("export_torch: " + e, file=sys.stderr)
        return 1
    nnjson.write_safetensors(
        a.out, {k: got[k] for k in want},
        {"slidescan.arch": json.dumps(arch, indent=1),
         "slidescan.meta": json.dumps(arch.get("meta", {}))})
    print("export_torch: wrote %d tensors to %s" % (len(want), a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
