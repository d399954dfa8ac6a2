"""BVLC's LeNet and CIFAR-10 quick solvers (read from ../shared/models, rewritten into a
temporary folder by tools/make_training_goldens.py's `published()`) trained 50 iterations
on small LMDBs that Caffe's own convert_mnist_data / convert_imageset / compute_image_mean
made (tests/golden/training/<kind>/), from the same starting weights: the loss curve, the
learning rate, the test scores and the last layer's params equal real Caffe's run."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import caffe_fx
import caffe_fx.pycaffe as caffe
from tests.training._common import (
    GOLDEN,
    close,
    facade_params,
    logged_tests,
    solver_log,
    solver_params,
)
from tools.make_training_goldens import MODELS, PUBLISHED_ITERS, published, published_init


def _feed_missing() -> str | None:
    try:
        from caffe_fx.data import open_feed  # noqa: F401
    except ImportError:
        return ("caffe_fx.data.open_feed (engineer 'data', issue #9) is not in this tree: "
                "the Data layers of LeNet and CIFAR-10 quick cannot be fed yet")
    return None


# (loss, params, test loss, test accuracy) tolerances.  CIFAR-10 quick: the project's 1e-4
# for whole curves.  LeNet's run is ill-conditioned in float32: its first 12 iterations
# match Caffe's within 1e-7, then a 1e-7 relative change of OUR OWN starting weights moves
# our own curve by 2.7e-4 (of the loss's 2.4) by iteration 50, ip2's weights by 1.4% and
# one of the 100 test images' argmax at iteration 25 (measured; Caffe's run sits within
# that spread), so it is held to 1e-5 for those 12 iterations and to that spread after.
TOLERANCE = {"cifar": (1e-4, 1e-4, 1e-4, 0.0), "lenet": (1e-3, 3e-2, 1e-4, 0.01)}
TIGHT = {"cifar": 50, "lenet": 12}

pytestmark = [
    pytest.mark.slow,  # LeNet: about 20 s on 2 cores
    pytest.mark.skipif(not MODELS.is_dir(), reason=f"needs {MODELS} (../shared/models)"),
    pytest.mark.skipif(_feed_missing() is not None, reason=_feed_missing() or ""),
]


@pytest.mark.parametrize("api", ["solver", "pycaffe"])
@pytest.mark.parametrize("kind", ["lenet", "cifar"])
def test_published_solver_matches_caffe(kind: str, api: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(GOLDEN / kind, tmp_path / kind)
    monkeypatch.chdir(tmp_path)
    solver_path = published(kind, tmp_path)
    init = published_init(kind, tmp_path)
    want = dict(np.load(GOLDEN / f"{kind}.npz"))
    record = json.loads((GOLDEN / f"{kind}.json").read_text())
    losses, lrs = [], []
    with solver_log() as lines:
        if api == "solver":
            with caffe_fx.Solver(solver_path.name, weights=str(init.name), device="cpu") as s:
                for _ in range(PUBLISHED_ITERS):
                    lrs.append(s.lr)
                    s.step(1)
                    losses.append(s.smoothed_loss)
                params = solver_params(s)
        else:
            f = caffe.get_solver(solver_path.name)
            f.net.copy_from(init.name)
            for _ in range(PUBLISHED_ITERS):
                lrs.append(f.lr)
                f.step(1)
                losses.append(float(f.net.blobs["loss"].data))
            params = facade_params(f)
    loss_tol, param_tol, test_loss_tol, accuracy_tol = TOLERANCE[kind]
    close(lrs, want["lr"], 1e-6, "lr")
    close(losses[:TIGHT[kind]], want["loss"][:TIGHT[kind]], 1e-5, "loss (first iterations)")
    close(losses, want["loss"], loss_tol, "loss")
    for k in (k for k in want if k.startswith("param/")):
        close(params[k], want[k], param_tol, k)
    got = logged_tests(lines)
    assert [(t["iter"], [n for n, _ in t["outputs"]]) for t in got] == \
        [(t["iter"], [n for n, _ in t["outputs"]]) for t in record["tests"]]
    for g, w in zip(got, record["tests"]):
        for (name, a), (_, b) in zip(g["outputs"], w["outputs"]):
            if name == "accuracy":
                assert abs(a - b) <= accuracy_tol + 1e-6, f"iteration {w['iter']}: {a} != {b}"
            else:
                close(a, b, test_loss_tol, f"iteration {w['iter']}: {name}")
