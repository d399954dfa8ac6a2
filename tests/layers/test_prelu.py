"""PReLU against real Caffe: per-channel and shared slopes, 2-D to 4-D bottoms, the
default constant 0.25 filler and explicit fillers, in place."""
import pytest
import torch

import caffe_fx
from caffe_fx.errors import UnsupportedFieldError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("PReLU")


def _net(shape, params=""):
    return input_net({"data": shape}) + (
        'layer { name: "prelu" type: "PReLU" bottom: "data" top: "out" %s }\n' % params)


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_prelu_matches_caffe(path):
    assert_matches(path)


def test_prelu_blob_shapes_and_default_filler():
    gm = caffe_fx.compile(_net((2, 3, 4)))
    assert gm.state_dict()["prelu.weight"].tolist() == [0.25, 0.25, 0.25]
    shared = caffe_fx.compile(_net((2, 3, 4), "prelu_param { channel_shared: true }"))
    assert shared.state_dict()["prelu.weight"].shape == torch.Size([])


def test_prelu_needs_2_to_4_axes():
    with pytest.raises(UnsupportedFieldError, match=r"'prelu' \(PReLU\): bottom shape"):
        caffe_fx.compile(_net((2, 3, 4, 5, 6)))
