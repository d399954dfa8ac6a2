"""Im2col (convolution_param): the columns a convolution would multiply, spatial layout kept.

Mirrors src/caffe/layers/im2col_layer.cpp: the channel axis becomes C * prod(kernel),
ordered (c, k_0, ..., k_n-1) like F.unfold, followed by the conv output's spatial axes.
Only kernel, stride, pad, dilation and axis matter; Caffe ignores the other fields.
"""
from __future__ import annotations

from ...errors import ShapeError
from ...ops import misc as CM
from ..geometry import conv_geometry
from ..registry import Call, LayerView, register
from .softmax import canonical_axis


@register("Im2col", params=("convolution_param",), bottoms=1, tops=1)
def im2col(view: LayerView) -> Call:
    p = view.param.convolution_param
    ndim = len(view.input_shapes[0])
    axis = canonical_axis(view, p.axis, ndim, "convolution_param.axis")
    n = ndim - axis - 1
    if n < 1:
        raise view.error(f"a {ndim}-D bottom with channel axis {axis} has no spatial axes",
                         ShapeError)
    g = conv_geometry(f"layer '{view.name}' ({view.type})", p, n)
    return Call(CM.im2col, dict(axis=axis, kernel=list(g.kernel), stride=list(g.stride),
                                pad=list(g.pad), dilation=list(g.dilation)))
