"""Shape-polymorphic helpers for Caffe's common layers (see ops/__init__.py).

Caffe re-runs every layer's Reshape on each forward, so sizes that Caffe derives from
the bottoms (Reshape's 0 and -1, Crop's reference size) are read from the runtime
shapes here, never baked in.  Mirrors src/caffe/layers/{reshape,crop,scale,bias}_layer.cpp.
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor


@torch.fx.wrap
def caffe_reshape(x: Tensor, start: int, end: int, dims: List[int]) -> Tensor:
    """Reshape: axes [start, end) become `dims`; a 0 copies the input dim at
    start + i, a -1 is inferred from the count (src/caffe/layers/reshape_layer.cpp)."""
    shape = list(x.shape)
    new: List[int] = shape[:start]
    for i, d in enumerate(dims):
        new.append(shape[start + i] if d == 0 else d)
    return x.reshape(new + shape[end:])


@torch.fx.wrap
def caffe_crop(x: Tensor, ref: Tensor, axis: int, offsets: List[int]) -> Tensor:
    """Crop: axes from `axis` on take `ref`'s size, starting at `offsets[i]`
    (src/caffe/layers/crop_layer.cpp)."""
    for i, off in enumerate(offsets):
        x = x.narrow(axis + i, off, ref.shape[axis + i])
    return x


def along_axis(t: Tensor, axis: int, ndim: int) -> Tensor:
    """`t` (covering the axes axis .. axis + t.dim() of an ndim-D blob) viewed so that it
    broadcasts against that blob, as Scale and Bias apply their second operand."""
    return t.reshape(list(t.shape) + [1] * (ndim - axis - t.dim()))


@torch.fx.wrap
def axis_mul(x: Tensor, scale: Tensor, axis: int) -> Tensor:
    """Scale with two bottoms: y = x * scale broadcast from `axis` on."""
    return x * along_axis(scale, axis, x.dim())


@torch.fx.wrap
def axis_add(x: Tensor, bias: Tensor, axis: int) -> Tensor:
    """Bias with two bottoms: y = x + bias broadcast from `axis` on."""
    return x + along_axis(bias, axis, x.dim())
