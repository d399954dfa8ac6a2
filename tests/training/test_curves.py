"""Loss curves, learning rates and final params of every update rule against
`caffe-oracle solve` (tests/golden/training/<case>.npz): caffe_fx.Solver fed through
`inputs=`, and the pycaffe solvers fed by setting net.blobs as the oracle does."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.training._common import (
    GOLDEN,
    close,
    facade_params,
    make_facade,
    make_solver,
    run_facade,
    run_solver,
    solver_params,
)

CASES = sorted(p.name[:-len("_solver.prototxt")] for p in GOLDEN.glob("*_solver.prototxt")
               if not p.name.startswith("run_"))


def test_every_update_rule_has_a_case() -> None:
    types = {(GOLDEN / f"{c}_solver.prototxt").read_text().split('type: "')[1].split('"')[0]
             for c in CASES}
    assert types == {"SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam"}


@pytest.mark.parametrize("api", ["solver", "pycaffe"])
@pytest.mark.parametrize("case", CASES)
def test_curve_matches_caffe(case: str, api: str, work: Path) -> None:
    want = dict(np.load(GOLDEN / f"{case}.npz"))
    n = len(want["loss"])
    if api == "solver":
        s = make_solver(f"{case}_solver.prototxt", weights="init.caffemodel")
        losses, lrs = run_solver(s, n)
        params = solver_params(s)
    else:
        f = make_facade(f"{case}_solver.prototxt")
        losses, lrs = run_facade(f, n)
        params = facade_params(f)
    close(lrs, want["lr"], 1e-6, "lr")
    close(losses, want["loss"], 1e-4, "loss")
    keys = sorted(k for k in want if k.startswith("param/"))
    assert sorted(params) == keys
    for k in keys:
        close(params[k], want[k], 1e-4, k)


def test_pycaffe_diffs_hold_the_update_and_params_move_in_place(work: Path) -> None:
    f = make_facade("sgd_solver.prototxt")
    weight = f.net.params["ip1"][0]
    data = weight.data  # pycaffe's arrays stay views across steps
    before = data.copy()
    run_facade(f, 1)
    np.testing.assert_array_equal(before - weight.diff, data)  # Net::Update: data -= diff
    assert np.abs(weight.diff).max() > 0
