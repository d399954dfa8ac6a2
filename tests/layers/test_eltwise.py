"""Eltwise against real Caffe: SUM with coefficients, PROD, MAX, 2 and 3 bottoms."""
import pytest

import caffe_fx
from caffe_fx.errors import ShapeError, UnsupportedFieldError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Eltwise")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_eltwise_matches_caffe(path):
    assert_matches(path)


@pytest.mark.parametrize("params, match", [
    ("operation: PROD coeff: 1 coeff: 2", r"eltwise_param.coeff = \[1.0, 2.0\] is not "
                                          r"supported; supported: no coefficients with "
                                          r"operation PROD"),
    ("coeff: 1", r"one per bottom \(2\)"),
])
def test_eltwise_rejects_what_caffe_rejects(params, match):
    net = input_net({"a": (2, 3), "b": (2, 3)}) + (
        'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "e" '
        'eltwise_param { %s } }' % params)
    with pytest.raises(UnsupportedFieldError, match=match):
        caffe_fx.compile(net)


def test_eltwise_needs_equal_shapes():
    net = input_net({"a": (2, 3), "b": (2, 1)}) + (
        'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "e" }')
    with pytest.raises(ShapeError, match="same shape"):
        caffe_fx.compile(net)
