# SPDX-License-Identifier: MIT
"""PyTorch side of bench/nn.sh: times inference and one training step
(forward, cross-entropy, backward, Adam) of an architecture given as a
slidescan-nn JSON file, on the CPU, with the same tile, batches and thread
count as bench_nn, and prints "key value" lines like bench_nn.

    bench_torch.py --arch FILE [--tile N] [--batch N] [--train-batch N]
                   [--threads N] [--iters N]
"""

import argparse
import os
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import nnjson  # noqa: E402


def timed(fn, iters):
    """Best wall-clock and best process-CPU milliseconds of iters runs."""
    fn()
    wall, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return min(wall), min(cpu)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", required=True)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    with open(a.arch) as f:
        net = nnjson.build(f.read())
    x = torch.randn(a.batch, net.arch["inputs"][0]["channels"], a.tile,
                    a.tile)

    net.eval()

    def infer():
        with torch.no_grad():
            net(x)
    inf_ms, inf_cpu = timed(infer, a.iters)

    net.train()
    xt = torch.randn(a.train_batch, x.shape[1], a.tile, a.tile)
    lab = (torch.arange(a.train_batch * a.tile * a.tile) // 7 % 3) \
        .reshape(a.train_batch, a.tile, a.tile)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    lossf = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = lossf(net(xt), lab)
        loss.backward()
        opt.step()
    train_ms, train_cpu = timed(step, a.iters)

    print("torch_version %s" % torch.__version__)
    print("torch_threads %d" % torch.get_num_threads())
    print("torch_mkldnn %d" % int(torch.backends.mkldnn.is_available()))
    print("torch_infer_ms %.2f" % inf_ms)
    print("torch_train_step_ms %.2f" % train_ms)
    print("torch_infer_cpu_ms %.2f" % inf_cpu)
    print("torch_train_step_cpu_ms %.2f" % train_cpu)


if __name__ == "__main__":
    main()
