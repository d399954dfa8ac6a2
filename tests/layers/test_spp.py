"""SPP against real Caffe: MAX/AVE, pyramid heights 1 to 3, non-square bottoms."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("SPP")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_spp_matches_caffe(path):
    assert_matches(path)


def _net(shape, height=3):
    dims = " ".join(f"dim: {d}" for d in shape)
    return ('layer { name: "in" type: "Input" top: "x" input_param { shape { %s } } }\n'
            'layer { name: "spp" type: "SPP" bottom: "x" top: "y"\n'
            '  spp_param { pyramid_height: %d } }\n' % (dims, height))


def test_bins_follow_the_input_size():
    import torch

    import caffe_fx

    gm = caffe_fx.compile(_net((1, 2, 9, 9)))
    assert gm(x=torch.randn(3, 2, 13, 17))["y"].shape == (3, 2 * (1 + 4 + 16))


def test_pyramid_too_high_for_the_bottom_raises():
    import caffe_fx
    from caffe_fx.errors import ShapeError

    with pytest.raises(ShapeError, match="pyramid_height = 4 is too high"):
        caffe_fx.compile(_net((1, 2, 9, 9), height=4))
