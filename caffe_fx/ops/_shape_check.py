"""The error of a forward on shapes Caffe's Reshape() would reject, and Blob's legacy
shape and count that the checks read.

The ops call `wrong_shape` only after a cheap Python int comparison on shapes has
failed, so a good forward pays nothing but the comparison.  Eager, exported and compiled
code raises caffe_fx.errors.ShapeError; TorchScript raises RuntimeError with the same
text (it cannot build project exceptions).
"""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from ..errors import ShapeError


def dims(x: Tensor) -> str:
    """`[2, 3, 4]`: the same spelling eager and in TorchScript."""
    shape: List[int] = [int(d) for d in x.shape]
    return str(shape)


def legacy_shape(shape: List[int]) -> List[int]:
    """Blob's legacy num, channels, height, width: `shape` padded with 1 to four axes
    (a longer shape is returned as it is).  TorchScript compiles it."""
    return shape + [1] * (4 - len(shape))


def count(shape: List[int]) -> int:
    """Blob::count over the axes given: their product, 1 for none."""
    n = 1
    for d in shape:
        n *= d
    return n


@torch.jit.unused
def _raise(message: str) -> None:
    raise ShapeError(message)


def wrong_shape(layer: str, kind: str, detail: str, check: str) -> None:
    """Raise `layer 'name' (Type): <detail>; Caffe: "<check>"`."""
    message = "layer '" + layer + "' (" + kind + "): " + detail + '; Caffe: "' + check + '"'
    if torch.jit.is_scripting():
        raise RuntimeError(message)
    _raise(message)
