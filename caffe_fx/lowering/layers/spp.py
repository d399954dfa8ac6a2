"""SPP (spp_param): spatial pyramid pooling, MAX or AVE, into 1, 2, 4, ... bins per side.

Mirrors src/caffe/layers/spp_layer.cpp: each level is a Caffe Pooling (ceil rounding,
pad clip) whose kernel and pad depend on the bottom's size, so they are computed on every
call by ops.misc.spp (which reuses ops.functional.pool2d).
"""
from __future__ import annotations

import math

from ...errors import ShapeError
from ...ops import misc as CM
from ...proto import caffe_pb2
from ..registry import Call, LayerView, register

_P = caffe_pb2.PoolingParameter


@register("SPP", params=("spp_param",), bottoms=1, tops=1)
def spp(view: LayerView) -> Call:
    p = view.param.spp_param
    shape = view.input_shapes[0]
    if len(shape) != 4:
        raise view.fail("bottom shape", list(shape), "4-D (N, C, H, W) bottoms")
    if p.pool not in (_P.MAX, _P.AVE):
        raise view.fail("spp_param.pool", _P.PoolMethod.Name(p.pool), "MAX, AVE")
    if p.pyramid_height < 1:
        raise view.fail("spp_param.pyramid_height", p.pyramid_height, "at least 1")
    # Caffe's Pooling set-up checks pad < kernel at each level (for the set-up size).
    for level in range(p.pyramid_height):
        bins = 2 ** level
        for size in shape[2:]:
            kernel = math.ceil(size / bins)
            if (kernel * bins - size + 1) // 2 >= kernel:
                raise view.error(f"pyramid_height = {p.pyramid_height} is too high for a "
                                 f"{shape[2]}x{shape[3]} bottom: level {level} would pad "
                                 f"by at least its kernel ({kernel})", ShapeError)
    return Call(CM.spp, dict(pyramid_height=p.pyramid_height, max_pool=p.pool == _P.MAX))
