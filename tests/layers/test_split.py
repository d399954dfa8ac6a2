"""Split against real Caffe: explicit, and the implicit splits Caffe inserts."""
import pytest

import caffe_fx
from caffe_fx.errors import NetDefinitionError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Split")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_split_matches_caffe(path):
    assert_matches(path)


def test_split_in_place_is_forbidden():
    net = input_net({"data": (2, 3)}) + (
        'layer { name: "sp" type: "Split" bottom: "data" top: "data" top: "b" }')
    with pytest.raises(NetDefinitionError, match="cannot work in place"):
        caffe_fx.compile(net)
