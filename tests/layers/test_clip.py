"""Clip against real Caffe: a range, in place (ReLU6-like), and min > max (all min)."""
import pytest

import caffe_fx
from caffe_fx.errors import UnsupportedFieldError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Clip")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_clip_matches_caffe(path):
    assert_matches(path)


def test_clip_needs_min_and_max():
    net = input_net({"data": (2, 3)}) + (
        'layer { name: "clip" type: "Clip" bottom: "data" top: "out" clip_param { min: 0 } }\n')
    with pytest.raises(UnsupportedFieldError, match=r"'clip' \(Clip\): clip_param.max = unset"):
        caffe_fx.compile(net)
