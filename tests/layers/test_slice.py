"""Slice against real Caffe: slice_point, equal split, axis, legacy slice_dim, one top."""
import pytest

import caffe_fx
from caffe_fx.errors import CaffeFxError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Slice")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_slice_matches_caffe(path):
    assert_matches(path)


@pytest.mark.parametrize("params, ntops, match", [
    ("slice_point: 4 slice_point: 2", 3, r"must increase strictly"),
    ("slice_point: 2", 3, r"slice_param.slice_point = \[2\] is not supported; supported: "
                          r"exactly 2 points"),
    ("", 4, r"cannot be sliced equally into 4"),
    ("axis: 1 slice_dim: 1", 2, r"either axis or slice_dim"),
])
def test_slice_rejects_what_caffe_rejects(params, ntops, match):
    tops = " ".join(f'top: "s{i}"' for i in range(ntops))
    net = input_net({"data": (2, 6, 4, 3)}) + (
        'layer { name: "sl" type: "Slice" bottom: "data" %s slice_param { %s } }'
        % (tops, params))
    with pytest.raises(CaffeFxError, match=match):
        caffe_fx.compile(net)
