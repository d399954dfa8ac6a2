"""AbsVal against real Caffe; like Caffe, it refuses to work in place."""
import pytest

import caffe_fx
from caffe_fx.errors import NetDefinitionError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("AbsVal")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_abs_val_matches_caffe(path):
    assert_matches(path)


def test_abs_val_in_place_is_refused():
    # absval_layer.cpp: "AbsVal Layer does not allow in-place computation."
    net = input_net({"data": (2, 3)}) + \
        'layer { name: "abs" type: "AbsVal" bottom: "data" top: "data" }\n'
    with pytest.raises(NetDefinitionError, match=r"'abs' \(AbsVal\) cannot work in place"):
        caffe_fx.compile(net)
