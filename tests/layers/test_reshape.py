"""Reshape against real Caffe: 0 and -1, axis (negative too), num_axes."""
import pytest
import torch

import caffe_fx
from caffe_fx.errors import CaffeFxError, NetDefinitionError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Reshape")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_reshape_matches_caffe(path):
    assert_matches(path)


def _net(params: str, top: str = "op") -> str:
    return input_net({"data": (2, 3, 4, 5)}) + (
        'layer { name: "op" type: "Reshape" bottom: "data" top: "%s" reshape_param { %s } }'
        % (top, params))


def test_reshape_resolves_0_and_minus1_at_run_time():
    gm = caffe_fx.compile(_net("shape { dim: 0 dim: -1 dim: 5 }"))
    assert gm(data=torch.zeros(7, 2, 3, 5))["op"].shape == (7, 6, 5)


@pytest.mark.parametrize("params, match", [
    ("shape { dim: -1 dim: -1 }", r"'op' \(Reshape\): reshape_param.shape = \[-1, -1\]"),
    ("shape { dim: 7 dim: -1 }", r"does not fit"),
    ("axis: 2 shape { dim: 0 dim: 0 dim: 0 }", r"dim\[2\] = 0 copies axis 4"),
    ("axis: 5 shape { dim: 1 }", r"reshape_param.axis = 5 is out of range"),
])
def test_reshape_rejects_what_caffe_rejects(params, match):
    with pytest.raises(CaffeFxError, match=match):
        caffe_fx.compile(_net(params))


def test_reshape_in_place_is_forbidden():
    with pytest.raises(NetDefinitionError, match="cannot work in place"):
        caffe_fx.compile(_net("shape { dim: 0 dim: -1 }", top="data"))
