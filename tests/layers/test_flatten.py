"""Flatten against real Caffe: axis and end_axis, negative too."""
import pytest

import caffe_fx
from caffe_fx.errors import NetDefinitionError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Flatten")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_flatten_matches_caffe(path):
    assert_matches(path)


def test_flatten_in_place_is_forbidden():
    net = input_net({"data": (2, 3, 4)}) + (
        'layer { name: "fl" type: "Flatten" bottom: "data" top: "data" }')
    with pytest.raises(NetDefinitionError, match="cannot work in place"):
        caffe_fx.compile(net)
