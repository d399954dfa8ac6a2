"""When the ops differentiate with Caffe's own backward, and which blob data it reads.

Ops stage, shared by ops/neuron.py, lrn.py, misc.py, loss.py and eltwise.py.  Their
autograd Functions run each layer's Backward_cpu (src/caffe/layers/*_layer.cpp), which
reads the blobs' data as it is when backward runs: after every later in-place layer
has written over it, since an in-place layer's bottom and top are one Blob (net.cpp).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def transformed() -> bool:
    """Whether a torch.func transform (grad, vmap, jacrev...) is running the op: its
    wrapped tensors take no autograd.Function written for Function.apply's ctx, no raw
    oneDNN op, no memory-format query and no data-dependent branch."""
    return torch._C._are_functorch_transforms_active()


def caffe_grad(*xs: Tensor) -> bool:
    """True when autograd will differentiate through the op: grad mode on and an input
    that requires grad, in eager mode or under torch.compile.  Never in TorchScript (the
    callers test torch.jit.is_scripting() first), under torch.export, whose programs
    (ONNX's too) keep the plain forward, nor under a torch.func transform (grad, vmap,
    jacrev...), which takes no autograd.Function written for Function.apply's ctx: there
    the plain forward's own derivative runs (README, deliberate differences)."""
    if not torch.is_grad_enabled() or torch.compiler.is_exporting() or transformed():
        return False
    return any(x.requires_grad for x in xs)


class BlobData:
    """One Caffe blob's data as the next Backward_cpu reads it: the last value written."""

    __slots__ = ("value",)

    def __init__(self, value: Tensor) -> None:
        self.value = value


def keep_top(ctx: Any, bottom: Tensor, top: Tensor, top_is_bottom: bool) -> None:
    """Records on the autograd node which blob `top` lives in (`ctx.caffe_blob`).

    In place, that is the bottom's blob when an op of this package made the bottom: it
    now holds `top`, so the backward of every earlier layer that reads this blob (a
    Sigmoid's top, an in-place TanH's data) sees what Caffe's would.  Otherwise a new
    blob.  Under torch.compile the ops read their own saved tensors instead."""
    if torch.compiler.is_compiling():
        return
    blob = getattr(bottom.grad_fn, "caffe_blob", None) if top_is_bottom else None
    if isinstance(blob, BlobData):
        blob.value = top.detach()
    else:
        blob = BlobData(top.detach())
    ctx.caffe_blob = blob


def current_top(ctx: Any, saved: Tensor) -> Tensor:
    """The top's data when backward runs: the blob's last value (see keep_top)."""
    blob = getattr(ctx, "caffe_blob", None)
    return blob.value if isinstance(blob, BlobData) else saved
