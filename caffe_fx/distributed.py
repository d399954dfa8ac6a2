"""Multi-process training over torch.distributed: what Caffe's NCCL solvers do between
the forward/backward passes and the update (src/caffe/parallel.cpp, tools/caffe.cpp).

Training stage.  `average_gradients` is NCCL<Dtype>::on_gradients_ready (the diffs of
every learnable param summed across the solvers, scaled by 1/solver_count), flattened into
buckets so that a net costs a few all_reduce calls, not one per blob;
`broadcast_parameters` is NCCL::Broadcast (every solver starts from the root's weights);
`launch` starts one process per rank (gloo on the CPU, NCCL with one GPU each), and
`init_from_env` joins a group `torchrun` started (env://).
"""
from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

__all__ = ["average", "average_gradients", "broadcast_parameters", "declare", "init_from_env", "is_root",
           "launch", "rank", "running", "world_size"]

_BUCKET_BYTES = 25 * 2**20  # as torch DDP's default bucket


# Caffe::solver_rank and Caffe::solver_count as pycaffe's set_solver_rank/set_solver_count
# declare them before a process group exists (BVLC's python/train.py builds its solver
# first, then joins the group through caffe.NCCL).
_DECLARED = {"rank": 0, "count": 1}


def running() -> bool:
    """Whether torch.distributed runs a group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (Caffe's solver_rank): torch.distributed's, else the declared
    one (declare(); 0 by default)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _DECLARED["rank"]


def world_size() -> int:
    """How many processes train together (Caffe's solver_count): torch.distributed's,
    else the declared count (declare(); 1 by default)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return _DECLARED["count"]


def declare(*, rank: int | None = None, count: int | None = None) -> None:
    """Sets the rank or count this process will have, before a group exists (pycaffe's
    set_solver_rank / set_solver_count): data feeds take that rank's records, rank 0
    alone logs, tests and snapshots, and the collectives wait for the group."""
    if rank is not None:
        _DECLARED["rank"] = int(rank)
    if count is not None:
        _DECLARED["count"] = int(count)


def is_root() -> bool:
    """Rank 0: the one that logs, tests and snapshots, as Caffe's root solver."""
    return rank() == 0


def _buckets(tensors: Sequence[torch.Tensor], limit: int) -> list[list[torch.Tensor]]:
    """Consecutive runs of tensors sharing device and dtype, each under `limit` bytes
    (a bigger tensor gets a bucket of its own)."""
    out: list[list[torch.Tensor]] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        last = out[-1] if out else None
        if last is None or last[0].device != t.device or last[0].dtype != t.dtype \
                or size + nbytes > limit:
            out.append([t])
            size = nbytes
        else:
            last.append(t)
            size += nbytes
    return out


def _flat_collective(tensors: Sequence[torch.Tensor], op: Callable[[torch.Tensor], Any],
                     bucket_bytes: int) -> None:
    """Runs `op` on one flat copy of each bucket, then copies the results back."""
    for bucket in _buckets(tensors, bucket_bytes):
        if len(bucket) == 1:
            op(bucket[0])  # in place, no copy
            continue
        flat = torch.cat([t.reshape(-1) for t in bucket])
        op(flat)
        offset = 0
        for t in bucket:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


@torch.no_grad()
def average_gradients(params: Iterable[torch.Tensor], *,
                      bucket_bytes: int = _BUCKET_BYTES) -> None:
    """All-reduces (SUM) every param's `.grad` across the processes, then divides by the
    world size, in place; a param without `.grad` counts as zeros (Caffe's diff is
    zeroed before each iteration).  A no-op unless torch.distributed runs with
    world_size > 1.  Every process must pass the same params in the same order."""
    if not running():
        return
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    average(grads, bucket_bytes=bucket_bytes)


def average(tensors: Sequence[torch.Tensor], *, bucket_bytes: int = _BUCKET_BYTES) -> None:
    """Every tensor becomes its mean over the processes, in place (NCCL's allreduce SUM,
    then the scale by 1/solver_count); a no-op without world_size > 1."""
    if not running():
        return
    import torch.distributed as dist

    n = dist.get_world_size()

    def reduce(t: torch.Tensor) -> None:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(n)

    _flat_collective(list(tensors), reduce, bucket_bytes)


@torch.no_grad()
def broadcast_parameters(tensors: Iterable[torch.Tensor], *, src: int = 0,
                         bucket_bytes: int = _BUCKET_BYTES) -> None:
    """Every process's tensors become rank `src`'s (NCCL::Broadcast before training:
    each solver's fillers ran with its own seed).  A no-op without world_size > 1."""
    if not running():
        return
    import torch.distributed as dist

    _flat_collective([t.data for t in tensors], lambda t: dist.broadcast(t, src=src),
                     bucket_bytes)


def init_from_env(device: torch.device | None = None) -> bool:
    """Joins the process group `torchrun` (or any launcher setting RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT) describes, with NCCL for CUDA devices and gloo otherwise;
    False when the environment describes no group of more than one process."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) < 2:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://")
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(index: int, fn: Callable[..., Any], world: int, port: int,
           devices: Sequence[int] | None, args: tuple) -> None:
    import torch.distributed as dist

    device = torch.device("cpu")
    if devices:
        device = torch.device(f"cuda:{devices[index]}")
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if devices else "gloo",
                            init_method=f"tcp://127.0.0.1:{port}", rank=index,
                            world_size=world)
    try:
        fn(index, world, device, *args)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable[..., Any], nprocs: int, *, devices: Sequence[int] | None = None,
           args: tuple = ()) -> list[int]:
    """Runs `fn(rank, world_size, device, *args)` in `nprocs` new processes joined in one
    process group: gloo on the CPU, or NCCL with process i on CUDA device `devices[i]`.
    `fn` must be importable (a module-level function).  Waits for every process (none is
    killed when another fails, so the root can finish writing a snapshot) and returns
    their exit codes, rank order.  SIGINT is left to the processes meanwhile: each acts on
    it as its solver's effect says."""
    import signal
    import threading

    import torch.multiprocessing as mp

    if devices is not None and len(devices) != nprocs:
        raise ValueError(f"launch: {nprocs} processes for {len(devices)} devices")
    ctx = mp.start_processes(_entry, args=(fn, nprocs, _free_port(),
                                           list(devices) if devices else None, args),
                             nprocs=nprocs, join=False, start_method="spawn")
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
    try:
        for process in ctx.processes:
            process.join()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    return [int(p.exitcode) if p.exitcode is not None else 1 for p in ctx.processes]
