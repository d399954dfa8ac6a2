"""Pooling (pooling_param): MAX and AVE with Caffe's ceil rounding and window clipping.

Mirrors src/caffe/layers/pooling_layer.cpp.  torch's pooling is used directly whenever
it provably agrees with Caffe for every input size (pad <= kernel/2, and pad > 0 or
kernel >= stride, where torch's "last window starts inside" rule matches Caffe's);
otherwise ops.functional.pool2d pads explicitly.  Deliberate difference: a NaN in a
MAX window propagates (Caffe skips it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...ops import functional as CF
from ...proto import caffe_pb2
from ..geometry import pool_geometry
from ..registry import Call, LayerView, register

_P = caffe_pb2.PoolingParameter


@register("Pooling", params=("pooling_param",), bottoms=1, tops=(1, 2))
def pooling(view: LayerView) -> Call:
    p = view.param.pooling_param
    if len(view.input_shapes[0]) != 4:
        raise view.fail("bottom shape", list(view.input_shapes[0]), "4-D (N, C, H, W) bottoms")
    if p.pool not in (_P.MAX, _P.AVE):
        raise view.fail("pooling_param.pool", _P.PoolMethod.Name(p.pool), "MAX, AVE")
    max_pool = p.pool == _P.MAX
    if len(view.tops) == 2 and not max_pool:
        raise view.error("a second top (the argmax mask) needs pool: MAX")
    g = pool_geometry(f"layer '{view.name}' ({view.type})", p, view.input_shapes[0][2:])
    ceil = p.round_mode == _P.CEIL
    if p.global_pooling:
        fn = torch.amax if max_pool else torch.mean
        if len(view.tops) == 2:
            return Call(CF.max_pool2d_with_mask, dict(kernel=list(g.kernel), stride=[1, 1],
                                                      pad=[0, 0], ceil=ceil))
        return Call(fn, dict(dim=[-2, -1], keepdim=True))
    kernel, stride, pad = list(g.kernel), list(g.stride), list(g.pad)
    torch_agrees = all(pd <= k // 2 and (pd > 0 or k >= s or not ceil)
                       for k, s, pd in zip(kernel, stride, pad))
    if len(view.tops) == 2:
        if not torch_agrees:
            raise view.error("a mask top with this kernel/stride/pad is not supported")
        return Call(CF.max_pool2d_with_mask, dict(kernel=kernel, stride=stride, pad=pad,
                                                  ceil=ceil))
    if not torch_agrees:
        return Call(CF.pool2d, dict(kernel=kernel, stride=stride, pad=pad, max_pool=max_pool,
                                    ceil=ceil))
    if max_pool:
        return Call(F.max_pool2d, dict(kernel_size=kernel, stride=stride, padding=pad,
                                       ceil_mode=ceil))
    return Call(F.avg_pool2d, dict(kernel_size=kernel, stride=stride, padding=pad,
                                   ceil_mode=ceil, count_include_pad=True))
