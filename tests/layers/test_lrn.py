"""LRN against real Caffe: ACROSS_CHANNELS (alpha / size) and WITHIN_CHANNEL (alpha / size^2,
k ignored), odd sizes wider than the channel count, in place."""
import pytest

import caffe_fx
from caffe_fx.errors import UnsupportedFieldError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("LRN")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_lrn_matches_caffe(path):
    assert_matches(path)


def test_lrn_even_size_is_refused():
    net = input_net({"data": (1, 4, 3, 3)}) + (
        'layer { name: "norm" type: "LRN" bottom: "data" top: "norm"\n'
        '  lrn_param { local_size: 4 } }\n')
    with pytest.raises(UnsupportedFieldError, match=r"'norm' \(LRN\): lrn_param.local_size = 4"):
        caffe_fx.compile(net)
