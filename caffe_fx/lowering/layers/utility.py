"""Utility layers: Silence, DummyData, Parameter, BatchReindex, Filter.

Mirrors src/caffe/layers/{silence,dummy_data,parameter,batch_reindex,filter}_layer.cpp.
DummyData's random fillers draw from torch's generator on every forward (Caffe refills
them on every forward too), so their values deliberately differ from Caffe's.  Filter's
top size depends on the data: shape inference keeps the full batch, as Caffe's first
Reshape does.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ...errors import ShapeError
from ...ops import misc as CM
from ..registry import IDENTITY, Call, CaffeModule, LayerView, Lowered, register
from ..._limits import check_shape


@register("Silence", bottoms=(1, None), tops=0)
def silence(view: LayerView) -> Lowered:
    return IDENTITY  # no tops: nothing is emitted


_DUMMY_FILLERS = "constant, uniform, gaussian (without sparse)"


@register("DummyData", params=("dummy_data_param",), bottoms=0, tops=(1, None))
def dummy_data(view: LayerView) -> Call:
    p = view.param.dummy_data_param
    n = len(view.tops)

    def per_top(field: str, values) -> list:
        if len(values) not in (1, n):
            raise view.error(f"dummy_data_param.{field} has {len(values)} entries for {n} "
                             "tops; allowed: 1 or one per top")
        return [values[0]] * n if len(values) == 1 else list(values)

    legacy = [f for f in ("num", "channels", "height", "width") if len(getattr(p, f))]
    if legacy and len(p.shape):
        raise view.error("dummy_data_param gives both shape and num/channels/height/width")
    if legacy:
        cols = [per_top(f, getattr(p, f)) for f in ("num", "channels", "height", "width")]
        shapes = [list(s) for s in zip(*cols)]
    else:
        shapes = [list(s.dim) for s in per_top("shape", p.shape)]
    shapes = [list(check_shape(s, f"layer '{view.name}' (DummyData): dummy_data_param "
                                  f"shape of top '{top}'")) for s, top in zip(shapes, view.tops)]
    if not p.data_filler:
        kinds, a, b = ["constant"] * n, [0.0] * n, [0.0] * n
    else:
        fillers = per_top("data_filler", p.data_filler)
        for f in fillers:
            if f.type not in ("constant", "uniform", "gaussian") or f.sparse != -1:
                raise view.fail("dummy_data_param.data_filler.type", repr(f.type),
                                _DUMMY_FILLERS)
        kinds = [f.type for f in fillers]
        a = [f.value if f.type == "constant" else f.min if f.type == "uniform" else f.mean
             for f in fillers]
        b = [f.max if f.type == "uniform" else f.std if f.type == "gaussian" else 0.0
             for f in fillers]
    if n > 1:
        return Call(CM.dummy_data, dict(shapes=shapes, fillers=kinds, a=a, b=b))
    if kinds[0] == "constant":
        return Call(torch.full, dict(size=shapes[0], fill_value=a[0]))
    return Call(CM.dummy_blob, dict(shape=shapes[0], filler=kinds[0], a=a[0], b=b[0]))


class Parameter(CaffeModule):
    """A learnable blob exposed as a top; Caffe leaves it unfilled (zeros)."""

    caffe_blobs = ("blob",)

    def __init__(self, shape: list[int]) -> None:
        super().__init__()
        self.blob = nn.Parameter(torch.empty(shape))
        self.fillers = [None]

    def forward(self) -> Tensor:
        return self.blob

    def extra_repr(self) -> str:
        return f"shape={list(self.blob.shape)}"


@register("Parameter", params=("parameter_param",), bottoms=0, tops=1)
def parameter(view: LayerView) -> Parameter:
    return Parameter(list(check_shape(view.param.parameter_param.shape.dim,
                                      f"layer '{view.name}' (Parameter): "
                                      "parameter_param.shape")))


@register("BatchReindex", bottoms=2, tops=1)
def batch_reindex(view: LayerView) -> Call:
    if len(view.input_shapes[1]) != 1:
        raise view.error(f"bottom[1] (the indices) has shape {list(view.input_shapes[1])}; "
                         "allowed: 1-D", ShapeError)
    return Call(CM.batch_reindex)


@register("Filter", bottoms=(2, None), tops=(1, None))
def filter_(view: LayerView) -> Call:
    if len(view.tops) != len(view.bottoms) - 1:
        raise view.error(f"has {len(view.bottoms)} bottoms and {len(view.tops)} tops; "
                         "allowed: one top per bottom but the last (the selector)")
    *items, selector = view.input_shapes
    if not selector:  # FilterLayer::Reshape reads bottom[last]->shape(0)
        raise view.error("the selector (last bottom) is a 0-axis scalar; allowed: a blob "
                         "of shape (N,) or (N, 1, ...)", ShapeError)
    if any(d != 1 for d in selector[1:]):
        raise view.error(f"the selector (last bottom) has shape {list(selector)}; every "
                         "axis but the first must be 1", ShapeError)
    for j, shape in enumerate(items):
        if not shape or shape[0] != selector[0]:
            raise view.error(f"bottom[{j}] has shape {list(shape)}; its first axis must "
                             f"equal the selector's ({selector[0]})", ShapeError)
    return Call(CM.filter_batch if len(items) == 1 else CM.filter_items)
