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
