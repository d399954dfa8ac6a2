"""The error of a forward on shapes Caffe's Reshape() would reject.

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


@torch.jit.unused
def _raise(message: str) -> None:
    raise ShapeError(message)


def wrong_shape(layer: str, kind: str, detail: str, check: str) -> None:
    """Raise `layer 'name' (Type): <detail>; Caffe: "<check>"`."""
    message = "layer '" + layer + "' (" + kind + "): " + detail + '; Caffe: "' + check + '"'
    if torch.jit.is_scripting():
        raise RuntimeError(message)
    _raise(message)
