"""Crop against real Caffe: default axis 2, one or per-axis offsets, axis."""
import pytest
import torch

import caffe_fx
from caffe_fx.errors import ShapeError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Crop")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_crop_matches_caffe(path):
    assert_matches(path)


def test_crop_must_fit():
    net = input_net({"data": (2, 3, 6, 6), "ref": (2, 3, 4, 4)}) + (
        'layer { name: "c" type: "Crop" bottom: "data" bottom: "ref" top: "c" '
        'crop_param { offset: 3 } }')
    with pytest.raises(ShapeError, match="does not fit axis 2"):
        caffe_fx.compile(net)


def test_crop_follows_the_reference_at_run_time():
    net = input_net({"data": (2, 3, 6, 6), "ref": (2, 3, 4, 4)}) + (
        'layer { name: "c" type: "Crop" bottom: "data" bottom: "ref" top: "c" '
        'crop_param { offset: 1 } }')
    gm = caffe_fx.compile(net)
    x = torch.randn(1, 3, 9, 9)
    out = gm(data=x, ref=torch.zeros(1, 3, 5, 2))["c"]
    assert torch.equal(out, x[:, :, 1:6, 1:3])
