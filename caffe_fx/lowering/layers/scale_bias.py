"""Scale and Bias (scale_param, bias_param): y = x * s (+ b), y = x + b.

Mirrors src/caffe/layers/scale_layer.cpp and bias_layer.cpp.  The operand covers the
axes axis .. axis + num_axes of bottom 0 (num_axes -1: to the end, 0: a scalar) and is
either a learned blob or, with two bottoms, bottom 1 (whose own shape sets the span; a
0-axis bottom 1 forces axis 0).  Blobs: Scale `weight` then `bias` (bias_term; with two
bottoms only `bias`), Bias `bias`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ...errors import ShapeError
from ...ops import shape as CS
from ...ops.fused import affine
from ...proto import caffe_pb2
from ..registry import Call, CaffeModule, LayerView, Shape, register
from .softmax import canonical_axis


class ScaleBias(CaffeModule):
    """x * weight + bias, each operand (learned or bottom 1) broadcast from `axis` on."""

    def __init__(self, weight_shape: Optional[Shape], bias_shape: Optional[Shape], axis: int,
                 fillers) -> None:
        super().__init__()
        blobs = []
        if weight_shape is not None:
            self.weight = nn.Parameter(torch.empty(weight_shape))
            blobs.append("weight")
        else:
            self.register_parameter("weight", None)
        if bias_shape is not None:
            self.bias = nn.Parameter(torch.empty(bias_shape))
            blobs.append("bias")
        else:
            self.register_parameter("bias", None)
        self.caffe_blobs = tuple(blobs)
        self.fillers = list(fillers)
        self.axis = axis

    def forward(self, x: Tensor, scale: Optional[Tensor] = None) -> Tensor:
        if scale is None:
            return affine(x, self.weight, self.bias, self.axis)
        x = x * CS.along_axis(scale, self.axis, x.dim())
        bias = self.bias
        if bias is not None:
            x = x + CS.along_axis(bias, self.axis, x.dim())
        return x

    def extra_repr(self) -> str:
        shapes = [f"{b}={list(getattr(self, b).shape)}" for b in self.caffe_blobs]
        return ", ".join(shapes + [f"axis={self.axis}"])


def _span(view: LayerView, axis_field: str, num_axes_field: str, axis: int,
          num_axes: int) -> tuple[int, Shape]:
    """The canonical axis and the operand's shape (one bottom: from num_axes; two
    bottoms: bottom 1's shape, which must match bottom 0 there)."""
    shape = view.input_shapes[0]
    if len(view.input_shapes) == 2:
        operand = view.input_shapes[1]
        start = 0 if not operand else canonical_axis(view, axis, len(shape), axis_field)
        if tuple(shape[start:start + len(operand)]) != tuple(operand):
            raise view.error(f"bottom[1] of shape {list(operand)} must match bottom[0] of "
                             f"shape {list(shape)} from axis {start} on", ShapeError)
        return start, tuple(operand)
    start = canonical_axis(view, axis, len(shape), axis_field)
    if num_axes < -1:
        raise view.fail(num_axes_field, num_axes, "-1 (to the last axis) or a count >= 0")
    end = len(shape) if num_axes == -1 else start + num_axes
    if end > len(shape):
        raise view.error(f"{axis_field} = {axis} with {num_axes_field} = {num_axes} runs "
                         f"past the {len(shape)}-D bottom", ShapeError)
    return start, tuple(shape[start:end])


@register("Scale", params=("scale_param",), bottoms=(1, 2), tops=1)
def scale(view: LayerView) -> CaffeModule | Call:
    p = view.param.scale_param
    axis, operand = _span(view, "scale_param.axis", "scale_param.num_axes", p.axis, p.num_axes)
    two = len(view.bottoms) == 2
    if two and not p.bias_term:
        return Call(CS.axis_mul, dict(axis=axis, layer=view.name))
    filler = p.filler
    if not p.HasField("filler"):
        filler = caffe_pb2.FillerParameter(type="constant", value=1.0)
    fillers = ([] if two else [filler]) + ([p.bias_filler] if p.bias_term else [])
    return ScaleBias(None if two else operand, operand if p.bias_term else None, axis, fillers)


@register("Bias", params=("bias_param",), bottoms=(1, 2), tops=1)
def bias(view: LayerView) -> CaffeModule | Call:
    p = view.param.bias_param
    axis, operand = _span(view, "bias_param.axis", "bias_param.num_axes", p.axis, p.num_axes)
    if len(view.bottoms) == 2:
        return Call(CS.axis_add, dict(axis=axis, layer=view.name))
    return ScaleBias(None, operand, axis, [p.filler])
