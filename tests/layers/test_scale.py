"""Scale against real Caffe: axis, num_axes (-1, 0), bias_term, fillers, two bottoms."""
import pytest

import caffe_fx
from caffe_fx.errors import ShapeError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Scale")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_scale_matches_caffe(path):
    assert_matches(path)


def test_scale_second_bottom_must_match():
    net = input_net({"data": (2, 3, 4), "s": (4,)}) + (
        'layer { name: "sc" type: "Scale" bottom: "data" bottom: "s" top: "sc" }')
    with pytest.raises(ShapeError, match=r"'sc' \(Scale\): bottom\[1\] of shape \[4\]"):
        caffe_fx.compile(net)


def test_scale_blobs_in_caffe_order():
    net = input_net({"data": (2, 3, 4), "s": (3,)}) + (
        'layer { name: "one" type: "Scale" bottom: "data" top: "one" '
        'scale_param { bias_term: true } }\n'
        'layer { name: "two" type: "Scale" bottom: "data" bottom: "s" top: "two" '
        'scale_param { bias_term: true } }')
    gm = caffe_fx.compile(net)
    assert gm.one.caffe_blobs == ("weight", "bias")
    assert gm.two.caffe_blobs == ("bias",)
