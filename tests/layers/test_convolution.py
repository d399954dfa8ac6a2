"""Convolution and Deconvolution against real Caffe."""
import pytest
import torch

import caffe_fx
from caffe_fx.errors import NetDefinitionError, ShapeError
from tests.golden.harness import assert_matches, cases_for, ids

CONV = cases_for("Convolution")
DECONV = cases_for("Deconvolution")


@pytest.mark.parametrize("path", CONV, ids=ids(CONV))
def test_convolution_matches_caffe(path):
    assert_matches(path)


@pytest.mark.parametrize("path", DECONV, ids=ids(DECONV))
def test_deconvolution_matches_caffe(path):
    assert_matches(path)


def _pair_net(shape0, shape1, tops=("c0", "c1"), kind="Convolution") -> str:
    top = "".join(f' top: "{t}"' for t in tops)
    return ('layer { name: "in" type: "Input" top: "a" top: "b" input_param { '
            f'shape {{ {" ".join(f"dim: {d}" for d in shape0)} }} '
            f'shape {{ {" ".join(f"dim: {d}" for d in shape1)} }} }} }}\n'
            f'layer {{ name: "conv" type: "{kind}" bottom: "a" bottom: "b"{top} '
            'convolution_param { num_output: 2 kernel_size: 3 } }\n')


@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution"])
def test_bottoms_share_one_weight(kind):
    gm = caffe_fx.compile(_pair_net((1, 3, 5, 5), (1, 3, 5, 5), kind=kind))
    (conv,) = [n for n in gm.graph.nodes if n.op == "call_module"]
    assert [n.name for n in conv.users] == ["c0", "c1"]  # one module, tops as getitem
    a, b = torch.randn(1, 3, 5, 5), torch.randn(1, 3, 5, 5)
    out = gm(a, b)
    (ya,), (yb,) = gm.conv(a), gm.conv(b)
    assert torch.equal(out["c0"], ya) and torch.equal(out["c1"], yb)


@pytest.mark.parametrize("kind", ["Convolution", "Deconvolution"])
def test_bottoms_of_different_shapes_are_refused(kind):
    # base_conv_layer.cpp Reshape: CHECK "All inputs must have the same shape."
    with pytest.raises(ShapeError, match=rf"layer 'conv' \({kind}\): bottom\[1\] 'b' has "
                                         r"shape \[1, 3, 6, 6\] but bottom\[0\] 'a' has "
                                         r"\[1, 3, 5, 5\]; all bottoms must have the same"):
        caffe_fx.compile(_pair_net((1, 3, 5, 5), (1, 3, 6, 6), kind=kind))


def test_one_top_per_bottom():
    # Layer::CheckBlobCounts with EqualNumBottomTopBlobs
    with pytest.raises(NetDefinitionError, match=r"layer 'conv' \(Convolution\): has 2 "
                                                 r"bottoms and 1 tops; .* must be equal"):
        caffe_fx.compile(_pair_net((1, 3, 5, 5), (1, 3, 5, 5), tops=("c0",)))


def test_in_place_is_refused():
    net = ('layer { name: "in" type: "Input" top: "a" input_param { shape { dim: 1 dim: 2 '
           'dim: 5 dim: 5 } } }\nlayer { name: "conv" type: "Convolution" bottom: "a" '
           'top: "a" convolution_param { num_output: 2 kernel_size: 1 } }\n')
    with pytest.raises(NetDefinitionError, match=r"layer 'conv' \(Convolution\) cannot work "
                                                 r"in place \(top\[0\] = bottom\[0\] = 'a'\)"):
        caffe_fx.compile(net)
