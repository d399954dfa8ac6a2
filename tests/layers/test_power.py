"""Power against real Caffe: power/scale/shift, fractional and negative powers, and the
constant-output cases (power 0, scale 0) that never read the bottom."""
import math

import pytest
import torch

import caffe_fx
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Power")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_power_matches_caffe(path):
    assert_matches(path)


@pytest.mark.parametrize("params, value", [("power: 0 scale: 2", 1.0),
                                           ("power: 2 scale: 0 shift: 3", 9.0)])
def test_power_constant_ignores_the_bottom(params, value):
    net = input_net({"data": (2, 3)}) + (
        'layer { name: "pow" type: "Power" bottom: "data" top: "out" power_param { %s } }\n'
        % params)
    out = caffe_fx.compile(net)(data=torch.full((4, 5), math.nan))["out"]
    assert out.shape == (4, 5)
    assert torch.equal(out, torch.full((4, 5), value))
