"""Filter against real Caffe: one and two filtered bottoms, (N,1) and (N,) selectors."""
import pytest

from tests.golden.harness import assert_matches, cases_for, ids

CASES = cases_for("Filter")


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_filter_matches_caffe(path):
    assert_matches(path)


def test_top_size_follows_the_selector_and_setup_keeps_the_full_batch():
    import torch

    import caffe_fx

    net = ('layer { name: "in" type: "Input" top: "x" top: "s"\n'
           '  input_param { shape { dim: 4 dim: 2 } shape { dim: 4 dim: 1 } } }\n'
           'layer { name: "f" type: "Filter" bottom: "x" bottom: "s" top: "y" }\n')
    gm = caffe_fx.compile(net)
    assert gm.meta["caffe"].blob_shapes["y"] == (4, 2)  # Caffe's first Reshape
    x = torch.arange(8.0).reshape(4, 2)
    y = gm(x=x, s=torch.tensor([[0.0], [2.0], [0.0], [-1.0]]))["y"]
    assert y.tolist() == [[2.0, 3.0], [6.0, 7.0]]
    assert gm(x=x, s=torch.zeros(4, 1))["y"].shape == (0, 2)


def test_selector_must_be_singleton_past_axis_0():
    import caffe_fx
    from caffe_fx.errors import ShapeError

    net = ('layer { name: "in" type: "Input" top: "x" top: "s"\n'
           '  input_param { shape { dim: 4 dim: 2 } shape { dim: 4 dim: 2 } } }\n'
           'layer { name: "f" type: "Filter" bottom: "x" bottom: "s" top: "y" }\n')
    with pytest.raises(ShapeError, match="selector"):
        caffe_fx.compile(net)
