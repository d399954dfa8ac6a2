"""Neuron layers: one bottom, one top of the same shape, in place allowed.

Mirrors src/caffe/layers/*_layer.cpp for ReLU, Sigmoid, TanH, ... (the CPU forward of
each, which is the reference: see ../shared/CAFFE_REFERENCE.md section 1.2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import Call, LayerView, register


@register("ReLU", params=("relu_param",), bottoms=1, tops=1)
def relu(view: LayerView) -> Call:
    slope = view.param.relu_param.negative_slope
    if slope == 0:
        return Call(torch.relu)
    return Call(F.leaky_relu, dict(negative_slope=slope))
