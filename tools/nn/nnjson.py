# SPDX-License-Identifier: MIT
"""slidescan-nn architectures in PyTorch, and safetensors without extra
packages.

build(arch) turns an architecture description (worker/nn/README.md) into a
torch.nn.Module that computes exactly what the C engine computes, so a model
can be trained or checked in PyTorch and exported for the engine.
Parameter names follow the architecture's layer names ("enc1.conv.weight").

read_safetensors / write_safetensors implement the file format with the
standard library (struct + json): an 8-byte little-endian header length,
the JSON header, then the raw little-endian data.
"""

import json
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

_DTYPES = {
    "F32": (torch.float32, 4),
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F64": (torch.float64, 8),
}


def read_safetensors(path):
    """Returns (tensors: dict name -> torch tensor, metadata: dict)."""
    with open(path, "rb") as f:
        buf = f.read()
    (hlen,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + hlen])
    meta = header.pop("__metadata__", {})
    data = buf[8 + hlen:]
    out = {}
    for name, d in header.items():
        dtype, size = _DTYPES[d["dtype"]]
        b, e = d["data_offsets"]
        raw = bytearray(data[b:e])
        t = torch.frombuffer(raw, dtype=dtype) if raw else \
            torch.empty(0, dtype=dtype)
        out[name] = t.reshape(d["shape"]).clone()
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """Writes float32 tensors (dict name -> tensor) with string metadata."""
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, t in tensors.items():
        raw = t.detach().to(torch.float32).contiguous().cpu().numpy() \
            .astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def _pair(v):
    return tuple(v) if isinstance(v, list) else (v, v)


def _module(layer, cin):
    """The torch module of one layer and its output channel count."""
    t = layer["type"]
    if t == "conv2d":
        m = nn.Conv2d(cin, layer["out_channels"], _pair(layer["kernel"]),
                      _pair(layer.get("stride", 1)),
                      _pair(layer.get("padding", 0)),
                      _pair(layer.get("dilation", 1)),
                      bias=layer.get("bias", True))
        return m, layer["out_channels"]
    if t == "conv_transpose2d":
        m = nn.ConvTranspose2d(cin, layer["out_channels"],
                               _pair(layer["kernel"]),
                               _pair(layer.get("stride", 1)),
                               _pair(layer.get("padding", 0)),
                               _pair(layer.get("output_padding", 0)),
                               bias=layer.get("bias", True),
                               dilation=_pair(layer.get("dilation", 1)))
        return m, layer["out_channels"]
    if t == "batchnorm2d":
        return nn.BatchNorm2d(cin, eps=layer.get("eps", 1e-5),
                              momentum=layer.get("momentum", 0.1),
                              affine=layer.get("affine", True)), cin
    if t == "linear":
        fin = layer.get("in_features", cin)
        return nn.Linear(fin, layer["out_features"],
                         bias=layer.get("bias", True)), layer["out_features"]
    if t == "relu":
        return nn.ReLU(), cin
    if t == "leaky_relu":
        return nn.LeakyReLU(layer.get("negative_slope", 0.01)), cin
    if t == "maxpool2d":
        k = _pair(layer["kernel"])
        return nn.MaxPool2d(k, _pair(layer.get("stride", layer["kernel"])),
                            _pair(layer.get("padding", 0)),
                            ceil_mode=layer.get("ceil_mode", False)), cin
    if t == "upsample_bilinear":
        return nn.Upsample(scale_factor=layer.get("scale", 2),
                           mode="bilinear",
                           align_corners=layer.get("align_corners", False)), \
            cin
    if t == "dropout":
        return nn.Dropout(layer.get("p", 0.5)), cin
    if t == "dropout2d":
        return nn.Dropout2d(layer.get("p", 0.5)), cin
    if t == "global_avgpool":
        return nn.AdaptiveAvgPool2d(1), cin
    if t in ("softmax", "concat", "add"):
        return None, cin
    raise ValueError("layer %s: unknown type %s" % (layer["name"], t))


def _key(name):
    return name.replace(".", "__")


class Net(nn.Module):
    """A slidescan-nn architecture as a PyTorch module.  forward() returns
    the outputs in the architecture's order (a tuple when several)."""

    def __init__(self, arch):
        super().__init__()
        self.arch = arch
        self.mods = nn.ModuleDict()
        chans = {i["name"]: i["channels"] for i in arch["inputs"]}
        prev = arch["inputs"][0]["name"]
        for layer in arch["layers"]:
            ins = layer.get("inputs") or [layer.get("input", prev)]
            cin = chans[ins[0]]
            if layer["type"] == "concat":
                cin = sum(chans[i] for i in ins)
            m, cout = _module(layer, cin)
            if m is not None:
                self.mods[_key(layer["name"])] = m
            chans[layer["name"]] = cout
            prev = layer["name"]
        self.outputs = arch.get("outputs") or [arch["layers"][-1]["name"]]

    def forward(self, x):
        vals = {self.arch["inputs"][0]["name"]: x}
        prev = self.arch["inputs"][0]["name"]
        for layer in self.arch["layers"]:
            ins = [vals[i] for i in
                   (layer.get("inputs") or [layer.get("input", prev)])]
            t = layer["type"]
            if t == "concat":
                y = torch.cat(ins, 1)
            elif t == "add":
                y = ins[0]
                for o in ins[1:]:
                    y = y + o
            elif t == "softmax":
                y = torch.softmax(ins[0], 1)
            elif t == "linear":
                y = self.mods[_key(layer["name"])](torch.flatten(ins[0], 1))
                y = y[:, :, None, None]
            else:
                y = self.mods[_key(layer["name"])](ins[0])
            vals[layer["name"]] = y
            prev = layer["name"]
        outs = tuple(vals[o] for o in self.outputs)
        return outs[0] if len(outs) == 1 else outs

    def engine_state(self):
        """state_dict with the engine's names (no num_batches_tracked)."""
        out = {}
        for k, v in self.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            mod, _, field = k[len("mods."):].rpartition(".")
            out[mod.replace("__", ".") + "." + field] = v
        return out

    def load_engine_state(self, tensors):
        own = self.state_dict()
        for name, v in tensors.items():
            layer, _, field = name.rpartition(".")
            key = "mods." + _key(layer) + "." + field
            if key not in own:
                raise KeyError("%s is not a parameter of this model" % name)
            own[key].copy_(v.reshape(own[key].shape))


def build(arch):
    """arch: dict or JSON text."""
    if isinstance(arch, str):
        arch = json.loads(arch)
    return Net(arch)


def save_model(path, net, arch_path=None):
    """Writes an engine model file (weights + architecture metadata)."""
    text = json.dumps(net.arch, indent=1)
    write_safetensors(path, net.engine_state(),
                      {"slidescan.arch": text,
                       "slidescan.meta": json.dumps(net.arch.get("meta", {}))})
    if arch_path:
        with open(arch_path, "w") as f:
            f.write(text)


def unet(levels=4, base=16, classes=3, in_channels=3, bn=True):
    """The U-Net used by the benchmark and the equivalence check: `levels`
    resolutions, channels base, 2 base, ... 3x3 conv + BN + ReLU twice per
    level, 2x2 max pooling, 2x2 stride-2 transposed convolutions, skip
    concatenations, a 1x1 head."""
    layers = []

    def block(name, cin_name, cout):
        for i in (1, 2):
            layers.append({"name": "%s.conv%d" % (name, i), "type": "conv2d",
                           "out_channels": cout, "kernel": 3, "padding": 1,
                           "bias": not bn,
                           **({"input": cin_name} if i == 1 else {})})
            if bn:
                layers.append({"name": "%s.bn%d" % (name, i),
                               "type": "batchnorm2d"})
            layers.append({"name": "%s.relu%d" % (name, i), "type": "relu"})
        return "%s.relu2" % name

    skips = []
    prev = "image"
    for lv in range(levels):
        if lv:
            layers.append({"name": "pool%d" % lv, "type": "maxpool2d",
                           "kernel": 2, "input": prev})
            prev = "pool%d" % lv
        prev = block("enc%d" % (lv + 1), prev, base << lv)
        skips.append(prev)
    for lv in range(levels - 1, 0, -1):
        layers.append({"name": "up%d" % lv, "type": "conv_transpose2d",
                       "out_channels": base << (lv - 1), "kernel": 2,
                       "stride": 2, "input": prev})
        layers.append({"name": "cat%d" % lv, "type": "concat",
                       "inputs": ["up%d" % lv, skips[lv - 1]]})
        prev = block("dec%d" % lv, "cat%d" % lv, base << (lv - 1))
    layers.append({"name": "head", "type": "conv2d", "out_channels": classes,
                   "kernel": 1, "input": prev})
    return {"format": "slidescan-nn", "version": 1,
            "name": "unet%d-%d" % (levels, base),
            "inputs": [{"name": "image", "channels": in_channels}],
            "outputs": ["head"], "layers": layers}
