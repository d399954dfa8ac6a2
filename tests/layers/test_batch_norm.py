"""BatchNorm against real Caffe: global statistics (TEST, or use_global_stats: true),
batch statistics (TRAIN, or use_global_stats: false), and the running-stat update."""
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import UnsupportedFieldError
from tests.golden.cases import input_net
from tests.golden.harness import LAYERS, assert_matches, cases_for, ids, relative_error

CASES = cases_for("BatchNorm")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_batch_norm_matches_caffe(path):
    assert_matches(path)


def test_batch_norm_train_forward_updates_running_stats_as_caffe():
    # The case starts from Caffe's zero blobs, so its recorded blobs after one TRAIN
    # forward are exactly one update: factor 1, batch mean, unbiased batch variance.
    path: Path = LAYERS / "batchnorm-train_update.npz"
    with np.load(path) as rec:
        gm = caffe_fx.compile(str(rec["prototxt"]), phase="train")
        with torch.no_grad():
            gm(data=torch.from_numpy(rec["input/data"]))
        for i, name in enumerate(("mean", "variance", "scale_factor")):
            ours = getattr(gm.bn, name).numpy()
            assert relative_error(ours, rec[f"param/bn/{i}"]) <= 1e-5, name


def test_batch_norm_blobs_in_caffe_order():
    gm = caffe_fx.compile(input_net({"data": (2, 3, 4, 4)})
                          + 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }')
    assert [n for n, _ in gm.bn.named_buffers()] == ["mean", "variance", "scale_factor"]
    assert [tuple(t.shape) for t in gm.bn.blob_tensors()] == [(3,), (3,), (1,)]


def test_batch_norm_learnable_statistics_rejected():
    net = input_net({"data": (2, 3, 4, 4)}) + (
        'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" param { lr_mult: 1 } }')
    with pytest.raises(UnsupportedFieldError, match=r"'bn'.*param\[0\]\.lr_mult = 1"):
        caffe_fx.compile(net)
