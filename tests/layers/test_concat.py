"""Concat against real Caffe: axis (negative too), legacy concat_dim, one bottom."""
import pytest

import caffe_fx
from caffe_fx.errors import CaffeFxError, ShapeError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Concat")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_concat_matches_caffe(path):
    assert_matches(path)


def test_concat_rejects_axis_with_concat_dim_and_mismatched_shapes():
    base = input_net({"a": (2, 3, 4), "b": (2, 3, 5)})
    with pytest.raises(CaffeFxError, match="either axis or concat_dim"):
        caffe_fx.compile(base + 'layer { name: "c" type: "Concat" bottom: "a" bottom: "b" '
                                'top: "c" concat_param { axis: 2 concat_dim: 2 } }')
    with pytest.raises(ShapeError, match="must match on every axis but 1"):
        caffe_fx.compile(base + 'layer { name: "c" type: "Concat" bottom: "a" bottom: "b" '
                                'top: "c" }')
