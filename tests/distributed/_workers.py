"""Functions the spawned processes of tests/distributed run (importable by name)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from caffe_fx import distributed


def collectives(rank: int, world: int, device: torch.device, out: str) -> None:
    """Rank r: grads (r + 1) * base, one param without grad, buckets of 64 bytes (several
    small tensors per bucket, a large one alone); then params set to r and broadcast."""
    shapes = [(3,), (2, 2), (5,), (40,), (1,), (2, 3)]
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for i, p in enumerate(params):
        if i != 2:  # param 2 has no grad on any rank: zeros
            p.grad = (rank + 1) * torch.arange(p.numel(), dtype=torch.float32).view(p.shape) \
                + i
    distributed.average_gradients(params, bucket_bytes=64)
    grads = [p.grad.tolist() for p in params]
    with torch.no_grad():
        for p in params:
            p.fill_(rank)
    distributed.broadcast_parameters(params, bucket_bytes=64)
    result = {"rank": distributed.rank(), "world": distributed.world_size(),
              "root": distributed.is_root(), "device": str(device), "grads": grads,
              "params": [p.tolist() for p in params]}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
