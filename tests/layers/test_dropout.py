"""Dropout against real Caffe: TEST is the identity (also with a per-layer phase inside a
TRAIN net), TRAIN with ratio 0 is the identity; TRAIN masks are random (torch's, not
Caffe's), so there both sides are checked for the form x * mask / (1 - p) instead."""
import numpy as np
import pytest
import torch

import caffe_fx
from tests.golden.harness import LAYERS, assert_matches, cases_for, ids

CASES = cases_for("Dropout")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_dropout_matches_caffe(path):
    assert_matches(path)


def _kept_or_dropped(x: np.ndarray, y: np.ndarray, ratio: float) -> float:
    """Asserts y is 0 or x / (1 - ratio) everywhere; returns the dropped fraction."""
    scale = np.float32(1.0) / (np.float32(1.0) - np.float32(ratio))
    kept = np.isclose(y, x * scale, rtol=1e-5, atol=0)
    assert np.all(kept | (y == 0))
    return float(1 - kept.mean())


@pytest.mark.parametrize("case, blob, ratio", [("dropout-train", "out", 0.4),
                                               ("dropout-train_inplace", "pre", 0.5)])
def test_dropout_train_has_caffes_form(case, blob, ratio):
    with np.load(LAYERS / f"{case}.npz") as f:
        rec = dict(f)
    x = rec["input/data"]
    if blob == "pre":  # the dropout sits in place on tanh(data)
        x = np.tanh(x)
    gm = caffe_fx.compile(str(rec["prototxt"]), phase="train", outputs=[blob])
    torch.manual_seed(0)
    ours = gm(data=torch.from_numpy(rec["input/data"]))[blob].numpy()
    _kept_or_dropped(x, rec[f"data/{blob}"], ratio)
    dropped = _kept_or_dropped(x, ours, ratio)
    assert 0 < dropped < 1


# scale_train (rbgirshick/caffe-fast-rcnn faster-rcnn, ppengtang/caffe): goldens from the
# OICR fork run for real (tools/make_rcnn_goldens.py).
RCNN = LAYERS.parent / "rcnn_layers"


def test_dropout_scale_train_false_scales_at_test_time():
    """Issue #10: x = 4 with the default ratio 0.5 gives 2 in the fork's TEST phase."""
    with np.load(RCNN / "dropout_unscaled_test_half.npz") as f:
        rec = dict(f)
    gm = caffe_fx.compile(str(rec["prototxt"]), phase="test", outputs=["out"])
    x = torch.from_numpy(rec["input/data"]).requires_grad_(True)
    out = gm(data=x)["out"]
    np.testing.assert_array_equal(out.detach().numpy(), rec["data/out"])  # all 2.0
    out.backward(torch.from_numpy(rec["topdiff/out"]))
    np.testing.assert_array_equal(x.grad.numpy(), rec["diff/data"])


def _unscaled_mask(x: np.ndarray, y: np.ndarray, td: np.ndarray, dx: np.ndarray) -> None:
    """y is 0 or x everywhere, some of each; dx is td where kept, else 0."""
    kept = y == x
    assert np.all(kept | (y == 0)) and 0 < kept.mean() < 1
    np.testing.assert_array_equal(dx, np.where(kept, td, 0))


def test_dropout_scale_train_false_train_keeps_x_unscaled():
    """TRAIN drops without the 1 / (1 - ratio) scale: the top is 0 or x, the diff 0 or td."""
    with np.load(RCNN / "dropout_unscaled_train.npz") as f:
        rec = dict(f)
    x, td = rec["input/data"], rec["topdiff/out"]
    _unscaled_mask(x, rec["data/out"], td, rec["diff/data"])  # the fork
    gm = caffe_fx.compile(str(rec["prototxt"]), phase="train", outputs=["out"])
    torch.manual_seed(0)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = gm(data=xt)["out"]
    out.backward(torch.from_numpy(td))
    _unscaled_mask(x, out.detach().numpy(), td, xt.grad.numpy())
