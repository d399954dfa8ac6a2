"""Pooling (pooling_param): MAX and AVE with Caffe's ceil rounding and window clipping;
round_mode FLOOR, or the DenseNet fork's `ceil_mode: false` (geometry.pool_ceil), floors.

Mirrors src/caffe/layers/pooling_layer.cpp.  torch's pooling is used directly whenever
it provably agrees with Caffe for every input size (pad <= kernel/2, and pad > 0 or
kernel >= stride, where torch's "last window starts inside" rule matches Caffe's);
otherwise ops.functional.pool2d pads explicitly.  Deliberate difference: a NaN in a
MAX window propagates (Caffe skips it).
"""
from __future__ import annotations

import torch

from ...errors import ShapeError
from ...ops import functional as CF
from ...proto import caffe_pb2
from ..geometry import pool_ceil, pool_geometry
from ..registry import Call, LayerView, register

_P = caffe_pb2.PoolingParameter


@register("Pooling", params=("pooling_param", "pooling_param.ceil_mode"), bottoms=1,
          tops=(1, 2))
def pooling(view: LayerView) -> Call:
    p = view.param.pooling_param
    if len(view.input_shapes[0]) != 4:
        raise view.fail("bottom shape", list(view.input_shapes[0]), "4-D (N, C, H, W) bottoms")
    if p.pool not in (_P.MAX, _P.AVE):
        raise view.fail("pooling_param.pool", _P.PoolMethod.Name(p.pool), "MAX, AVE")
    max_pool = p.pool == _P.MAX
    if len(view.tops) == 2 and not max_pool:
        raise view.error("a second top (the argmax mask) needs pool: MAX")
    where = f"layer '{view.name}' ({view.type})"
    g = pool_geometry(where, p, view.input_shapes[0][2:])
    ceil = pool_ceil(where, p)
    if p.global_pooling:
        fn = torch.amax if max_pool else torch.mean
        if len(view.tops) == 2:
            return Call(CF.max_pool2d_with_mask, dict(kernel=list(g.kernel), stride=[1, 1],
                                                      pad=[0, 0], ceil=ceil, layer=view.name))
        return Call(fn, dict(dim=[-2, -1], keepdim=True))
    kernel, stride, pad = list(g.kernel), list(g.stride), list(g.pad)
    _check_windows(view, view.input_shapes[0][2:], kernel, stride, pad, ceil)
    torch_agrees = all(pd <= k // 2 and (pd > 0 or k >= s or not ceil)
                       for k, s, pd in zip(kernel, stride, pad))
    if len(view.tops) == 2:
        if not torch_agrees:
            raise view.error("a mask top with this kernel/stride/pad is not supported")
        return Call(CF.max_pool2d_with_mask, dict(kernel=kernel, stride=stride, pad=pad,
                                                  ceil=ceil, layer=view.name))
    if not torch_agrees:
        return Call(CF.pool2d, dict(kernel=kernel, stride=stride, pad=pad, max_pool=max_pool,
                                    ceil=ceil, layer=view.name))
    fn = CF.max_pool if max_pool else CF.ave_pool
    return Call(fn, dict(kernel=kernel, stride=stride, pad=pad, ceil=ceil, layer=view.name))


def _check_windows(view: LayerView, spatial, kernel, stride, pad, ceil: bool) -> None:
    """PoolingLayer::Reshape's output size, on the compile-time shape: a kernel beyond the
    padded input gives a negative size (Caffe's Blob::Reshape CHECK fails); a window
    starting past the input and its padding (a stride beyond it) would pool nothing
    (Caffe writes -FLT_MAX there).  Both are refused before anything is allocated."""
    for axis, (size, k, s, pd) in enumerate(zip(spatial, kernel, stride, pad)):
        span = size + 2 * pd - k
        pooled = (-(-span // s) if ceil else span // s) + 1
        if pd and (pooled - 1) * s >= size + pd:
            pooled -= 1  # Caffe: the last window must start inside the image
        name = "hw"[axis] if len(spatial) == 2 else str(axis)
        if pooled < 1:
            raise view.error(
                f"pooling_param kernel {name} = {k} is larger than the padded bottom "
                f"({size} + 2 * {pd}): the top would have {pooled} rows; allowed: a kernel "
                "that fits the padded bottom", ShapeError)
        if (pooled - 1) * s >= size + pd:
            raise view.error(
                f"pooling_param stride {name} = {s} puts the last window past the bottom "
                f"({size} + pad {pd}), where it pools nothing; allowed: stride < "
                f"{size + pd} for this bottom", ShapeError)
