"""Log against real Caffe: base e (-1), base 10, a base below 1, scale and shift, in place."""
import pytest

import caffe_fx
from caffe_fx.errors import UnsupportedFieldError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Log")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_log_matches_caffe(path):
    assert_matches(path)


def test_log_base_must_be_positive():
    net = input_net({"data": (2, 3)}) + (
        'layer { name: "log" type: "Log" bottom: "data" top: "out" log_param { base: 0 } }\n')
    with pytest.raises(UnsupportedFieldError, match=r"'log' \(Log\): log_param.base = 0"):
        caffe_fx.compile(net)
