"""Exp against real Caffe: base e (-1) and explicit bases, scale and shift, base 1."""
import pytest

import caffe_fx
from caffe_fx.errors import UnsupportedFieldError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Exp")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_exp_matches_caffe(path):
    assert_matches(path)


def test_exp_base_must_be_positive():
    net = input_net({"data": (2, 3)}) + (
        'layer { name: "exp" type: "Exp" bottom: "data" top: "out" exp_param { base: -2 } }\n')
    with pytest.raises(UnsupportedFieldError, match=r"'exp' \(Exp\): exp_param.base = -2"):
        caffe_fx.compile(net)
