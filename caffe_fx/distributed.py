"""Multi-process training over torch.distributed: what Caffe's P2PSync / NCCL solvers do
between the forward/backward passes and the update.

Training stage.  Mirrors NCCL<Dtype>::on_gradients_ready (src/caffe/parallel.cpp): the
diffs of every learnable param are summed across the solvers and scaled by 1/solver_count.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["average_gradients"]


@torch.no_grad()
def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """All-reduces each param's `.grad` (a missing one counts as zeros) and divides by the
    world size, in place; a no-op unless torch.distributed runs with world_size > 1."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(world)
