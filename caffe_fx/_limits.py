"""Size limits on blob shapes, checked from the shapes before any tensor exists.

Beneath every stage: used by the builder (every input, every layer's tops and blobs, the
whole net), the readers (declared sizes of stored arrays: HDF5, caffemodel, weight files)
and the pycaffe Blob.  Mirrors
Blob::Reshape in src/caffe/blob.cpp: every dim must be >= 0 and a blob's count may not
exceed INT_MAX ("blob size exceeds INT_MAX"), which is also our default per-blob limit.
A second, per-net limit bounds the elements of all blobs and parameters together, so
that a few-byte prototxt cannot ask for terabytes.  Both can be changed with the
environment variables CAFFE_FX_MAX_BLOB_ELEMENTS and CAFFE_FX_MAX_NET_ELEMENTS.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence

from .errors import ShapeError

# Caffe's own limit: Blob::Reshape CHECKs count <= INT_MAX.
MAX_BLOB_ELEMENTS = 2**31 - 1
# All blobs and parameters of one net together: 2^34 float32 values are 64 GiB.
MAX_NET_ELEMENTS = 2**34


def _limit(env: str, default: int) -> int:
    raw = os.environ.get(env)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ShapeError(f"environment variable {env} = {raw!r} is not a whole number; "
                         "allowed: a positive element count") from None
    if value <= 0:
        raise ShapeError(f"environment variable {env} = {value}; allowed: a positive "
                         "element count")
    return value


def max_blob_elements() -> int:
    """The per-blob element limit: CAFFE_FX_MAX_BLOB_ELEMENTS, else Caffe's INT_MAX."""
    return _limit("CAFFE_FX_MAX_BLOB_ELEMENTS", MAX_BLOB_ELEMENTS)


def max_net_elements() -> int:
    """The per-net element limit: CAFFE_FX_MAX_NET_ELEMENTS, else 2^34."""
    return _limit("CAFFE_FX_MAX_NET_ELEMENTS", MAX_NET_ELEMENTS)


def check_shape(shape: Sequence[object], who: str, *, allow_zero: bool = True) -> tuple[int, ...]:
    """`shape` as a tuple of ints, or a ShapeError naming `who` (file, layer, field) when a
    dim is not an integer, is negative (or zero with `allow_zero=False`), or the count
    exceeds the per-blob limit.  Exact integer arithmetic: no overflow."""
    dims: list[int] = []
    for d in shape:
        if isinstance(d, bool) or not hasattr(d, "__index__"):
            raise ShapeError(f"{who}: dim {d!r} of shape {list(shape)} is not an integer")
        dims.append(int(d.__index__()))  # type: ignore[attr-defined]
    low = 0 if allow_zero else 1
    bad = [d for d in dims if d < low]
    if bad:
        raise ShapeError(f"{who}: shape {dims} has dim {bad[0]}; allowed: dims >= {low}")
    count = math.prod(dims)
    limit = max_blob_elements()
    if count > limit:
        raise ShapeError(
            f"{who}: shape {dims} holds {count} elements, more than the {limit} allowed per "
            "blob (Caffe: \"blob size exceeds INT_MAX\"; CAFFE_FX_MAX_BLOB_ELEMENTS changes "
            "the limit)")
    return tuple(dims)


def check_net_total(shapes: Iterable[Sequence[int]], where: str) -> None:
    """All blobs and parameters of a net together stay under the per-net limit."""
    total = sum(math.prod(s) for s in shapes)
    limit = max_net_elements()
    if total > limit:
        raise ShapeError(
            f"{where}: the net's blobs and parameters hold {total} elements together, more "
            f"than the {limit} allowed per net (CAFFE_FX_MAX_NET_ELEMENTS changes the limit)")
