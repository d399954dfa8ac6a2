"""The pycaffe solvers' step drops the param diffs and takes the backward's gradients as
them (caffe_fx/pycaffe/blob.py Blob.drop_diff): what pycaffe code sees must not change.
After a step every param diff is the value its data lost (SGDSolver's Update), a diff
array the user holds keeps showing the blob, and a param no gradient reaches still gets
its weight-decay update as Caffe's zeroed diff does."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import caffe_fx.pycaffe as caffe

NET = """name: "tiny"
layer { name: "data" type: "Input" top: "data" top: "target"
  input_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 }
                        bias_filler { type: "constant" value: 0.1 } } }
layer { name: "side" type: "InnerProduct" bottom: "data" top: "side"
  inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.5 }
                        bias_filler { type: "constant" value: 0.2 } } }
layer { name: "silence" type: "Silence" bottom: "side" }
layer { name: "loss" type: "EuclideanLoss" bottom: "ip" bottom: "target" top: "loss" }
"""
SOLVER = ('base_lr: 0.1\nmomentum: 0.9\nweight_decay: 0.01\nlr_policy: "fixed"\n'
          'max_iter: 100\ndisplay: 0\nsnapshot_after_train: false\nsolver_mode: CPU\n'
          'random_seed: 3\n')


def _solver(tmp_path: Path) -> caffe.SGDSolver:
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}"\n' + SOLVER)
    solver = caffe.SGDSolver(str(tmp_path / "solver.prototxt"))
    r = np.random.RandomState(0)
    solver.net.blobs["data"].data[...] = r.randn(4, 3)
    solver.net.blobs["target"].data[...] = r.randn(4, 2)
    return solver


def test_each_diff_is_what_its_data_lost(tmp_path: Path) -> None:
    solver = _solver(tmp_path)
    held = solver.net.params["ip"][0].diff  # held across the steps
    for _ in range(3):
        before = {k: [b.data.copy() for b in v] for k, v in solver.net.params.items()}
        solver.step(1)
        for name, blobs in solver.net.params.items():
            for old, blob in zip(before[name], blobs):
                np.testing.assert_allclose(blob.diff, old - blob.data, rtol=1e-5, atol=1e-7)
                assert blob.diff.any()  # "side": decay only, no gradient reaches it
    np.testing.assert_array_equal(held, solver.net.params["ip"][0].diff)
    assert np.shares_memory(held, solver.net.params["ip"][0].diff)


def test_the_same_steps_without_dropping(tmp_path: Path) -> None:
    # The dropped diffs give the very numbers the zeroed ones gave.
    a, b = _solver(tmp_path), _solver(tmp_path)
    b._train.clear_param_diffs = b.net.clear_param_diffs  # the zeroing Net::ClearParamDiffs
    for name in a.net.params:
        for x, y in zip(a.net.params[name], b.net.params[name]):
            y.data[...] = x.data
    for _ in range(3):
        a.step(1)
        b.step(1)
    for name in a.net.params:
        for x, y in zip(a.net.params[name], b.net.params[name]):
            np.testing.assert_array_equal(x.data, y.data)
            np.testing.assert_array_equal(x.diff, y.diff)
