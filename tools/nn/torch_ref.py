# SPDX-License-Identifier: MIT
"""Reference tensors from PyTorch for the engine's equivalence check
(tests/e2e/nn_torch.sh runs this, then tests/unit/test_nn_torch.c).

Writes into OUTDIR:
  model.safetensors  a small U-Net that uses every layer type, with random
                     weights and batch-norm statistics, architecture in the
                     metadata (the engine loads it as it is)
  input.safetensors  x (2 x 3 x 64 x 64), labels (2 x 64 x 64, some 255 =
                     ignored), class_weight [3]
  ref.safetensors    eval.<output>: both outputs in eval mode
                     train.seg: the output in training mode
                     running.<bn>.running_mean / running_var after it
                     ce.loss, grad.<param>: weighted cross-entropy with
                     ignore_index 255 and its parameter gradients
                     adam.<param>, adamw.<param>, sgd.<param>: the weights
                     after one step of each optimiser from those gradients
                     dice.loss, dice.grad: the soft Dice loss of the
                     eval logits and its gradient w.r.t. the logits

    torch_ref.py OUTDIR
"""

import copy
import os
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import nnjson  # noqa: E402

IGNORE = 255

ADAM = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)
ADAMW = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
SGD = dict(lr=1e-2, momentum=0.9, weight_decay=1e-4)


def arch():
    """Two resolutions down by max pooling, one by a strided convolution,
    back up by a transposed convolution and by bilinear upsampling, skip
    concatenations, a residual addition, dilated and 1x1 convolutions,
    leaky ReLU, dropout (p = 0, so that training passes compare), and a
    classifier head (global average pooling, linear, softmax) as a second
    output."""
    L = []

    def cbr(name, cout, inp=None, k=3, pad=1, dil=1, stride=1, act="relu"):
        d = {"name": name + ".conv", "type": "conv2d", "out_channels": cout,
             "kernel": k, "padding": pad, "dilation": dil, "stride": stride,
             "bias": False}
        if inp:
            d["input"] = inp
        L.append(d)
        L.append({"name": name + ".bn", "type": "batchnorm2d"})
        if act == "relu":
            L.append({"name": name + ".act", "type": "relu"})
        else:
            L.append({"name": name + ".act", "type": "leaky_relu",
                      "negative_slope": 0.1})
        return name + ".act"

    e1 = cbr("e1a", 8)
    e1 = cbr("e1b", 8, act="leaky")
    L.append({"name": "p1", "type": "maxpool2d", "kernel": 2, "input": e1})
    e2 = cbr("e2a", 16, "p1")
    e2 = cbr("e2b", 16, pad=2, dil=2)
    e3 = cbr("e3", 32, e2, stride=2)
    L.append({"name": "e3.res", "type": "conv2d", "out_channels": 32,
              "kernel": 1, "input": e3})
    L.append({"name": "e3.sum", "type": "add", "inputs": [e3, "e3.res"]})
    L.append({"name": "drop", "type": "dropout", "p": 0.0})
    L.append({"name": "up2", "type": "conv_transpose2d", "out_channels": 16,
              "kernel": 2, "stride": 2})
    L.append({"name": "cat2", "type": "concat", "inputs": ["up2", e2]})
    d2 = cbr("d2", 16, "cat2")
    L.append({"name": "up1", "type": "upsample_bilinear", "scale": 2,
              "input": d2})
    L.append({"name": "cat1", "type": "concat", "inputs": ["up1", e1]})
    d1 = cbr("d1", 8, "cat1", act="leaky")
    L.append({"name": "seg", "type": "conv2d", "out_channels": 3,
              "kernel": 1, "input": d1})
    L.append({"name": "gap", "type": "global_avgpool", "input": "e3.sum"})
    L.append({"name": "fc", "type": "linear", "out_features": 4})
    L.append({"name": "cls", "type": "softmax"})
    return {"format": "slidescan-nn", "version": 1, "name": "torch-check",
            "inputs": [{"name": "image", "channels": 3}],
            "outputs": ["seg", "cls"], "layers": L}


def randomise(net, gen):
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)
            elif name.endswith("bn.weight"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif name.endswith("bn.bias"):
                t.copy_(torch.randn(t.shape, generator=gen) * 0.1)


def dice_loss(logits, labels, weight, smooth=1.0):
    """The engine's soft Dice: per class over the whole batch, weighted
    mean over classes, ignored pixels count for no class."""
    p = torch.softmax(logits, 1)
    valid = (labels != IGNORE)
    lab = torch.where(valid, labels, torch.zeros_like(labels))
    g = F.one_hot(lab, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    v = valid[:, None].to(p.dtype)
    p = p * v
    g = g * v
    inter = (p * g).sum((0, 2, 3))
    den = p.sum((0, 2, 3)) + g.sum((0, 2, 3))
    d = 1 - (2 * inter + smooth) / (den + smooth)
    return (weight * d).sum() / weight.sum()


def step(net, grads, opt_cls, kw):
    n2 = copy.deepcopy(net)
    for (name, p) in n2.named_parameters():
        p.grad = grads[name].clone()
    opt = opt_cls(n2.parameters(), **kw)
    opt.step()
    return n2.engine_state()


def main():
    out = sys.argv[1]
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    a = arch()
    net = nnjson.build(a)
    randomise(net, gen)
    x = torch.randn(2, 3, 64, 64, generator=gen)
    labels = torch.randint(0, 3, (2, 64, 64), generator=gen)
    labels[:, :5, :] = IGNORE
    weight = torch.tensor([0.5, 1.0, 2.0])
    nnjson.save_model(os.path.join(out, "model.safetensors"), net)
    nnjson.write_safetensors(os.path.join(out, "input.safetensors"),
                             {"x": x, "labels": labels.float(),
                              "class_weight": weight})
    ref = {}

    net.eval()
    with torch.no_grad():
        seg, cls = net(x)
    ref["eval.seg"] = seg
    ref["eval.cls"] = cls
    lg = seg.clone().requires_grad_(True)
    dl = dice_loss(lg, labels, weight)
    dl.backward()
    ref["dice.loss"] = dl.detach().reshape(1)
    ref["dice.grad"] = lg.grad

    before = copy.deepcopy(net)
    net.train()
    seg, _ = net(x)
    ref["train.seg"] = seg.detach()
    for k, v in net.engine_state().items():
        if "running" in k:
            ref["running." + k] = v
    loss = F.cross_entropy(seg, labels, weight=weight, ignore_index=IGNORE)
    net.zero_grad()
    loss.backward()
    ref["ce.loss"] = loss.detach().reshape(1)
    grads = {}
    for name, p in net.named_parameters():
        # The engine updates every trainable parameter each step, like
        # PyTorch with zero (not None) gradients for unused parameters.
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads[name] = p.grad.clone()
        key = name[len("mods."):].rpartition(".")
        ref["grad." + key[0].replace("__", ".") + "." + key[2]] = p.grad
    before.train()
    for tag, cls_, kw in (("adam", torch.optim.Adam, ADAM),
                          ("adamw", torch.optim.AdamW, ADAMW),
                          ("sgd", torch.optim.SGD, SGD)):
        for k, v in step(before, grads, cls_, kw).items():
            if "running" not in k:
                ref[tag + "." + k] = v
    nnjson.write_safetensors(os.path.join(out, "ref.safetensors"), ref)
    print("torch_ref: wrote %d reference tensors with torch %s" %
          (len(ref), torch.__version__))


if __name__ == "__main__":
    main()
