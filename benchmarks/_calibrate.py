"""Scales a net's classifier so that its softmax is not saturated, for _common.prepare_net.

    python benchmarks/_calibrate.py NET.prototxt IN.caffemodel OUT.caffemodel LAYER SCALE

Multiplies every blob of LAYER (the layer whose top the output Softmax reads) by SCALE
and writes the weights as a caffemodel (caffe_fx.save_caffemodel).  Random weights
(`caffe-oracle --randomize`) give ResNet-50 logits of magnitude ~2500: its probabilities
are then 0 or 1 up to near-ties, where one ulp of a logit moves a probability by 1e-4,
so a parity check of `prob` measures the softmax's conditioning, not the tool.  The
reference outputs are then Caffe's own on the scaled weights.
"""
from __future__ import annotations

import sys

import torch

import caffe_fx


def main() -> None:
    prototxt, weights, out, layer, scale = sys.argv[1:6]
    gm = caffe_fx.compile(prototxt, weights, fuse=False)
    module = gm.get_submodule(gm.meta["caffe"].modules[layer])
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(float(scale))
    caffe_fx.save_caffemodel(out, gm, prototxt, force=True)


if __name__ == "__main__":
    main()
