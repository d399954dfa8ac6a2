"""Shape-polymorphic helpers for Caffe's common layers (see ops/__init__.py).

Caffe re-runs every layer's Reshape on each forward, so sizes that Caffe derives from
the bottoms (Reshape's 0 and -1, Crop's reference size) are read from the runtime
shapes here, never baked in.  Mirrors src/caffe/layers/{reshape,crop,scale,bias}_layer.cpp.
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from ._shape_check import count as _count
from ._shape_check import dims as _dims
from ._shape_check import wrong_shape


@torch.fx.wrap
def caffe_concat(xs: List[Tensor], dim: int, layer: str = "") -> Tensor:
    """Concat: torch.cat after ConcatLayer::Reshape's CHECKs (concat_layer.cpp)."""
    for i in range(1, len(xs)):
        if xs[i].dim() != xs[0].dim():
            wrong_shape(layer, "Concat", "bottom[" + str(i) + "] of shape " + _dims(xs[i])
                        + " has " + str(xs[i].dim()) + " axes; bottom[0] of shape "
                        + _dims(xs[0]) + " has " + str(xs[0].dim()),
                        "All inputs must have the same #axes.")
        for j in range(xs[0].dim()):
            if j != dim and xs[i].shape[j] != xs[0].shape[j]:
                wrong_shape(layer, "Concat", "bottom[" + str(i) + "] of shape "
                            + _dims(xs[i]) + " differs from bottom[0] of shape "
                            + _dims(xs[0]) + " at axis " + str(j) + " (only the concat "
                            + "axis " + str(dim) + " may differ)",
                            "All inputs must have the same shape, except at concat_axis.")
    return torch.cat(xs, dim)


@torch.fx.wrap
def caffe_slice(x: Tensor, dim: int, points: List[int], sections: int, layer: str = ""
                ) -> List[Tensor]:
    """Slice: at `points` if any, else into `sections` equal pieces, after
    SliceLayer::Reshape's CHECKs (slice_layer.cpp)."""
    size = x.shape[dim] if x.dim() > dim else 0
    if x.dim() <= dim:
        wrong_shape(layer, "Slice", "bottom of shape " + _dims(x) + " has no axis "
                    + str(dim), "slice_dim out of range.")
    if len(points) > 0:
        if points[-1] > size:  # Caffe's last top would get size - points[-1] < 0
            wrong_shape(layer, "Slice", "slice_point " + str(points) + " runs past axis "
                        + str(dim) + " of size " + str(size) + " of the bottom of shape "
                        + _dims(x) + " (the last top would get size "
                        + str(size - points[-1]) + ")", "shape[i] >= 0")
        return list(torch.tensor_split(x, points, dim))
    if size % sections != 0:
        wrong_shape(layer, "Slice", "axis " + str(dim) + " of size " + str(size)
                    + " of the bottom of shape " + _dims(x) + " cannot be sliced equally "
                    + "into " + str(sections) + " tops",
                    "Number of top blobs (" + str(sections) + ") should evenly divide "
                    + "input slice axis (" + str(size) + ")")
    return list(torch.tensor_split(x, sections, dim))


@torch.fx.wrap
def caffe_reshape(x: Tensor, start: int, end: int, dims: List[int], layer: str = ""
                  ) -> Tensor:
    """Reshape: axes [start, end) become `dims`; a 0 copies the input dim at
    start + i, a -1 is inferred from the count (src/caffe/layers/reshape_layer.cpp)."""
    shape = list(x.shape)
    if len(shape) < end:
        wrong_shape(layer, "Reshape", "bottom of shape " + _dims(x) + " lacks axes "
                    + str(start) + " to " + str(end), "end_axis <= bottom[0]->num_axes()")
    new: List[int] = shape[:start]
    for i, d in enumerate(dims):
        new.append(shape[start + i] if d == 0 else d)
    new = new + shape[end:]
    known, inferred = 1, False
    for d in new:
        if d == -1:
            inferred = True
        else:
            known *= d
    count = _count(shape)
    # ReshapeLayer::Reshape: CHECK_EQ(0, bottom count % explicit_count) with a -1, then
    # CHECK_EQ(top count, bottom count).
    if inferred and (known == 0 or count % known != 0):
        wrong_shape(layer, "Reshape", "bottom of shape " + _dims(x) + " holds " + str(count)
                    + " values, which do not fit the top shape " + str(new),
                    "bottom count (" + str(count) + ") must be divisible by the product of "
                    + "the specified dimensions (" + str(known) + ")")
    if not inferred and known != count:
        wrong_shape(layer, "Reshape", "bottom of shape " + _dims(x) + " holds " + str(count)
                    + " values, which do not fit the top shape " + str(new),
                    "output count must match input count")
    return x.reshape(new)


@torch.fx.wrap
def caffe_crop(x: Tensor, ref: Tensor, axis: int, offsets: List[int], layer: str = ""
               ) -> Tensor:
    """Crop: axes from `axis` on take `ref`'s size, starting at `offsets[i]`
    (src/caffe/layers/crop_layer.cpp)."""
    if ref.dim() != x.dim() or x.dim() != axis + len(offsets):
        wrong_shape(layer, "Crop", "bottoms of shape " + _dims(x) + " and " + _dims(ref)
                    + " need the " + str(axis + len(offsets)) + " axes the net was set up "
                    + "with", "number of offset values specified must be equal to the "
                    + "number of dimensions following axis.")
    for i, off in enumerate(offsets):
        if x.shape[axis + i] - off < ref.shape[axis + i]:
            wrong_shape(layer, "Crop", "bottom of shape " + _dims(x) + " cannot be cropped "
                        + "to the reference of shape " + _dims(ref) + ": axis "
                        + str(axis + i) + " of size " + str(x.shape[axis + i])
                        + " at offset " + str(off) + " has no room for "
                        + str(ref.shape[axis + i]), "the crop for dimension "
                        + str(axis + i) + " is out-of-bounds with size "
                        + str(ref.shape[axis + i]) + " and offset " + str(off))
    for i, off in enumerate(offsets):
        x = x.narrow(axis + i, off, ref.shape[axis + i])
    return x


def _second_fits(x: Tensor, t: Tensor, axis: int, layer: str, kind: str, what: str
                 ) -> None:
    # ScaleLayer/BiasLayer::Reshape: the second bottom's shape is bottom[0]'s from axis on.
    if x.dim() < axis + t.dim():
        wrong_shape(layer, kind, "bottom[1] of shape " + _dims(t) + " extends past bottom[0] "
                    + "of shape " + _dims(x) + " from axis " + str(axis), what
                    + " blob's shape extends past bottom[0]'s shape when applied starting "
                    + "with bottom[0] axis = " + str(axis))
    for i in range(t.dim()):
        if x.shape[axis + i] != t.shape[i]:
            wrong_shape(layer, kind, "bottom[1] of shape " + _dims(t) + " does not match "
                        + "bottom[0] of shape " + _dims(x) + " from axis " + str(axis),
                        "dimension mismatch between bottom[0]->shape(" + str(axis + i)
                        + ") and " + what + "->shape(" + str(i) + ")")


def along_axis(t: Tensor, axis: int, ndim: int) -> Tensor:
    """`t` (covering the axes axis .. axis + t.dim() of an ndim-D blob) viewed so that it
    broadcasts against that blob, as Scale and Bias apply their second operand."""
    return t.reshape(list(t.shape) + [1] * (ndim - axis - t.dim()))


@torch.fx.wrap
def axis_mul(x: Tensor, scale: Tensor, axis: int, layer: str = "") -> Tensor:
    """Scale with two bottoms: y = x * scale broadcast from `axis` on."""
    _second_fits(x, scale, axis, layer, "Scale", "scale")
    return x * along_axis(scale, axis, x.dim())


@torch.fx.wrap
def axis_add(x: Tensor, bias: Tensor, axis: int, layer: str = "") -> Tensor:
    """Bias with two bottoms: y = x + bias broadcast from `axis` on."""
    _second_fits(x, bias, axis, layer, "Bias", "bias")
    return x + along_axis(bias, axis, x.dim())
