"""One solver case run live with real Caffe (caffe-oracle solve), from the golden W0 and
inputs, against caffe_fx.optim: catches goldens gone stale against the oracle."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.nets.oracle import ORACLE
from tests.optim._train import GOLDEN, params_of, run, start


@pytest.mark.oracle
def test_adam_groups_live(tmp_path: Path) -> None:
    case = "adam_sigmoid_groups"
    for name in (f"{case}.solver.prototxt", "groups.prototxt", "groups_w0.caffemodel",
                 "inputs.npz"):
        shutil.copy(GOLDEN / name, tmp_path / name)
    subprocess.run([str(ORACLE), "solve", f"{case}.solver.prototxt", "--iters", "12",
                    "--inputs", "inputs.npz", "--weights", "groups_w0.caffemodel",
                    "--out", "out.npz"], cwd=tmp_path, check=True, capture_output=True)
    want = np.load(tmp_path / "out.npz")
    gm, opt, sched = start(case)
    losses, _ = run(gm, opt, sched, dict(np.load(GOLDEN / "inputs.npz")), 0, 12)
    np.testing.assert_allclose(losses, want["loss"], rtol=1e-4)
    for key, value in params_of(gm).items():
        scale = float(np.abs(want[key]).max())
        assert float(np.abs(value - want[key]).max()) <= 1e-4 * scale, key
