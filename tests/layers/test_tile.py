"""Tile against real Caffe: axis (negative too) and tiles."""
import pytest

import caffe_fx
from caffe_fx.errors import UnsupportedFieldError
from tests.golden.cases import input_net
from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Tile")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_tile_matches_caffe(path):
    assert_matches(path)


def test_tile_needs_tiles():
    net = input_net({"data": (2, 3)}) + 'layer { name: "t" type: "Tile" bottom: "data" top: "t" }'
    with pytest.raises(UnsupportedFieldError, match=r"tile_param.tiles = 0"):
        caffe_fx.compile(net)
