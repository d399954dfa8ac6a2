"""caffe_fx.distributed's collectives on two gloo processes started by its own launch():
bucketed average_gradients is NCCL::on_gradients_ready's sum / solver_count, and
broadcast_parameters gives every rank the root's values."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from caffe_fx import distributed

ROOT = Path(__file__).resolve().parents[2]
LAUNCH = """
import sys
from caffe_fx import distributed
from tests.distributed._workers import collectives
sys.exit(max(distributed.launch(collectives, 2, args=(sys.argv[1],))))
"""


def test_average_and_broadcast_across_two_processes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", LAUNCH, str(tmp_path)], cwd=ROOT, check=True,
                   timeout=300)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    shapes = [(3,), (2, 2), (5,), (40,), (1,), (2, 3)]
    for r, got in enumerate(ranks):
        assert (got["rank"], got["world"], got["root"], got["device"]) == \
            (r, 2, r == 0, "cpu")
        for i, (shape, grad) in enumerate(zip(shapes, got["grads"])):
            base = torch.arange(torch.Size(shape).numel(), dtype=torch.float32).view(shape)
            # ranks hold 1*base+i and 2*base+i: the mean is 1.5*base+i; no grad is zeros
            want = torch.zeros(shape) if i == 2 else 1.5 * base + i
            assert torch.equal(torch.tensor(grad), want), (r, i)
        for p in got["params"]:
            assert torch.equal(torch.tensor(p), torch.zeros_like(torch.tensor(p)))


def test_single_process_is_a_no_op() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 4.0)
    distributed.average_gradients([p])
    distributed.broadcast_parameters([p])
    assert p.grad.tolist() == [4.0, 4.0, 4.0] and p.tolist() == [1.0, 1.0, 1.0]
    assert (distributed.rank(), distributed.world_size(), distributed.is_root()) == (0, 1, True)
