"""Shared by the training tests: the golden folder (tools/make_training_goldens.py), a
work copy of it, and one training run through caffe_fx.Solver or the pycaffe solvers
feeding the batches as the oracle does (iteration k takes batch k mod 3)."""
from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import caffe_fx
import caffe_fx.pycaffe as caffe
from caffe_fx.weights_io import to_blobs

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "training"
ROOT_TOOLS = Path(__file__).resolve().parents[2] / "tools"
COMMON = ("tiny.prototxt", "init.caffemodel", "inputs.npz")


def arrays() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "inputs.npz") as z:
        return dict(z)


def batches() -> list[dict[str, np.ndarray]]:
    a = arrays()
    return [{"data": a[f"data@{k}"], "label": a[f"label@{k}"]} for k in range(3)]


def eval_batch() -> dict[str, np.ndarray]:
    a = arrays()
    return {"data": a["test_data"], "label": a["test_label"]}


def close(got: Any, want: Any, tol: float, what: str) -> None:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(float(np.abs(want).max()), 1e-30) if want.size else 1.0
    err = float(np.abs(got - want).max()) / scale if want.size else 0.0
    assert err <= tol, f"{what}: max error {err:.3g} relative to {scale:.3g} (> {tol})"


def solver_params(s: caffe_fx.Solver) -> dict[str, np.ndarray]:
    return {f"param/{layer}/{i}": b.array for layer, blobs in to_blobs(s.net).items()
            for i, b in enumerate(blobs)}


def facade_params(s: Any) -> dict[str, np.ndarray]:
    return {f"param/{layer}/{i}": b.data.copy() for layer, blobs in s.net.params.items()
            for i, b in enumerate(blobs)}


def make_solver(path: str, **kwargs: Any) -> caffe_fx.Solver:
    feed = batches()
    test = eval_batch()
    return caffe_fx.Solver(path, device="cpu", inputs=lambda it: feed[it % 3],
                           test_inputs=lambda i, k: test, **kwargs)


def run_solver(s: caffe_fx.Solver, until: int) -> tuple[list[float], list[float]]:
    """step(1) until iter == `until`: (loss of each iteration, lr of each)."""
    losses, lrs = [], []
    while s.iter < until:
        lrs.append(s.lr)
        s.step(1)
        losses.append(s.smoothed_loss)  # average_loss 1: this iteration's loss
    return losses, lrs


def make_facade(path: str, weights: str | None = "init.caffemodel") -> Any:
    s = caffe.get_solver(path)
    if weights:
        s.net.copy_from(weights)
    test = eval_batch()
    for net in s.test_nets:
        for k, v in test.items():
            net.blobs[k].data[...] = v
    return s


def run_facade(s: Any, until: int) -> tuple[list[float], list[float]]:
    """As the oracle drives pycaffe: set the blobs, step(1), read the loss blob."""
    feed = batches()
    losses, lrs = [], []
    while s.iter < until:
        for k, v in feed[s.iter % 3].items():
            s.net.blobs[k].data[...] = v
        lrs.append(s.lr)
        s.step(1)
        losses.append(float(s.net.blobs["loss"].data))
    return losses, lrs


@contextmanager
def solver_log() -> Iterator[list[str]]:
    """The lines logged on caffe_fx.solver while the block runs."""
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("caffe_fx.solver")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def logged_tests(lines: list[str]) -> list[dict[str, Any]]:
    """The test runs in log lines, as the generator parses Caffe's glog lines."""
    tests: list[dict[str, Any]] = []
    for line in lines:
        m = re.search(r"Iteration (\d+), Testing net \(#(\d+)\)", line)
        if m:
            tests.append({"iter": int(m.group(1)), "net": int(m.group(2)), "outputs": []})
        m = re.search(r"Test net output #(\d+): (\S+) = (\S+)", line)
        if m and tests:
            tests[-1]["outputs"].append([m.group(2), float(m.group(3))])
    return tests
