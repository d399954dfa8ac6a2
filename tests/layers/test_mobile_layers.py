"""The mobile nets' fork layers against float64 references written from the forks'
sources (no oracle here runs them):

- ReLU6, chuanqi305/ssd's relu6_layer.cpp: min(max(x, 0), 6), and a backward passing the
  diff only where the bottom data is strictly inside (0, 6); in place that data is the
  top's, as a later in-place layer leaves it.
- ShuffleChannel, farmingyard/ShuffleNet's shuffle_channel_layer.cpp: Resize_cpu's copy
  loops forward (group x C/group) and backward (C/group x group).
- DepthwiseConvolution, yonghenglh6/DepthwiseConvolution's depthwise_conv_layer.cpp:
  BaseConvolutionLayer's im2col + gemm on the CPU, i.e. a grouped convolution for any
  group, written here as direct loops.

compile() is checked against each forward and backward, the ops by gradcheck, the forks'
CHECKs as caffe_fx errors, and a net of all three scripts and exports."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import NetDefinitionError, ShapeError, UnsupportedFieldError
from caffe_fx.ops import mobile as M
from tests.golden.harness import relative_error

f32 = np.float32


def _input(shape: tuple[int, ...], name: str = "data") -> str:
    return f'input: "{name}" input_shape {{ {" ".join(f"dim: {d}" for d in shape)} }}\n'


# ---------------------------------------------------------------------------- ReLU6

def relu6_forward(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, 0.0), 6.0)


def relu6_backward(bottom_data: np.ndarray, td: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return td * ((bottom_data > 0) & (bottom_data < 6))


# Exactly 0 and 6 included: the fork's diff is 0 there (torch.clamp's derivative is 1).
EDGES = np.array([-3.0, -0.0, 0.0, 1e-3, 2.5, 5.999, 6.0, 6.001, 9.0], dtype=f32)


@pytest.mark.parametrize("in_place", [False, True], ids=["new_top", "in_place"])
def test_relu6_matches_the_fork_forward_and_backward(in_place: bool) -> None:
    top = "data" if in_place else "out"
    net = _input((2, 9)) + f'layer {{ name: "r" type: "ReLU6" bottom: "data" top: "{top}" }}\n'
    rng = np.random.default_rng(0)
    x = np.stack([EDGES, rng.uniform(-8, 12, 9).astype(f32)])
    gm = caffe_fx.compile(net, outputs=[top])
    xt = torch.from_numpy(x).requires_grad_(True)
    out = gm(data=xt)[top]
    assert relative_error(out.detach().numpy(), relu6_forward(x.astype(np.float64))) == 0
    td = rng.normal(size=x.shape).astype(f32)
    out.backward(torch.from_numpy(td))
    want = relu6_backward(x.astype(np.float64), td.astype(np.float64))
    assert relative_error(xt.grad.numpy(), want) <= 1e-7
    assert xt.grad[0, 1] == 0 and xt.grad[0, 2] == 0 and xt.grad[0, 6] == 0  # -0, 0, 6


def test_relu6_backward_at_nan_is_the_forks() -> None:
    x = torch.tensor([float("nan"), 3.0], requires_grad=True)
    y = M.relu6(x)
    assert torch.isnan(y[0]) and y[1] == 3
    y.backward(torch.ones(2))
    assert x.grad.tolist() == [0.0, 1.0]  # (NaN > 0 && NaN < 6) is false


def test_in_place_relu6_reads_what_a_later_in_place_layer_wrote() -> None:
    """ReLU6 then TanH, both in place on one blob: the fork's ReLU6 backward tests
    tanh(relu6(x)), always below 6, so a bottom above 6 still passes its diff."""
    net = (_input((1, 6)) + 'layer { name: "r" type: "ReLU6" bottom: "data" top: "data" }\n'
           'layer { name: "t" type: "TanH" bottom: "data" top: "data" }\n')
    x = torch.tensor([[-1.0, 0.5, 2.0, 5.5, 7.0, 20.0]], requires_grad=True)
    gm = caffe_fx.compile(net, outputs=["data"])
    out = gm(data=x)["data"]
    td = np.array([[0.3, -1.2, 0.7, 2.0, 1.5, -0.4]])
    out.backward(torch.from_numpy(td.astype(f32)))
    blob = np.tanh(relu6_forward(x.detach().numpy().astype(np.float64)))  # the blob at backward
    want = relu6_backward(blob, td * (1 - blob * blob))  # TanH's backward, then ReLU6's
    assert relative_error(x.grad.numpy(), want) <= 1e-6
    assert x.grad[0, 4] != 0 and x.grad[0, 5] != 0 and x.grad[0, 0] == 0


def test_relu6_gradcheck_away_from_the_kinks() -> None:
    x = torch.tensor([-2.0, 0.7, 3.1, 5.2, 8.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(M.relu6, (x,))


def test_relu6_refuses_a_negative_slope() -> None:
    net = _input((1, 3)) + ('layer { name: "r" type: "ReLU6" bottom: "data" top: "out"\n'
                            '  relu_param { negative_slope: 0.1 } }\n')
    with pytest.raises(UnsupportedFieldError, match=r"layer 'r' \(ReLU6\): "
                                                    r"relu_param.negative_slope = 0.1"):
        caffe_fx.compile(net)


# ------------------------------------------------------------------- ShuffleChannel

def _resize(out: np.ndarray, inp: np.ndarray, group_row: int, group_column: int) -> None:
    """ShuffleChannelLayer::Resize_cpu on one item: (C, spatial) arrays."""
    for i in range(group_row):
        for j in range(group_column):
            out[j * group_row + i] = inp[i * group_column + j]


def shuffle_forward(x: np.ndarray, group: int) -> np.ndarray:
    shape = x.shape + (1,) * (4 - x.ndim)  # Reshape: num, channels, height, width
    xs = x.reshape(shape[0], shape[1], -1)
    top = np.empty_like(xs)
    for n in range(shape[0]):
        _resize(top[n], xs[n], group, shape[1] // group)
    return top.reshape(shape)


def shuffle_backward(td: np.ndarray, group: int) -> np.ndarray:
    ts = td.reshape(td.shape[0], td.shape[1], -1)
    diff = np.empty_like(ts)
    for n in range(td.shape[0]):
        _resize(diff[n], ts[n], td.shape[1] // group, group)
    return diff


def _shuffle_net(shape: tuple[int, ...], group: int, top: str = "out") -> str:
    return _input(shape) + (f'layer {{ name: "s" type: "ShuffleChannel" bottom: "data" '
                            f'top: "{top}" shuffle_channel_param {{ group: {group} }} }}\n')


SHUFFLES = {
    "g3_c6": ((2, 6, 3, 4), 3),  # ShuffleNet v1's g3
    "g2_c6": ((1, 6, 2, 3), 2),  # ShuffleNet v2's
    "g1_identity": ((1, 4, 2, 2), 1),
    "gC_identity": ((1, 4, 2, 2), 4),
    "legacy_2d": ((3, 8), 4),  # the top is N x C x 1 x 1
    "legacy_3d": ((2, 6, 5), 2),
}


@pytest.mark.parametrize("case", SHUFFLES, ids=list(SHUFFLES))
def test_shuffle_channel_matches_the_fork_forward_and_backward(case: str) -> None:
    shape, group = SHUFFLES[case]
    rng = np.random.default_rng(3)
    x = rng.normal(size=shape).astype(f32)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = caffe_fx.compile(_shuffle_net(shape, group))(data=xt)["out"]
    want = shuffle_forward(x.astype(np.float64), group)
    assert out.shape == want.shape and relative_error(out.detach().numpy(), want) == 0
    td = rng.normal(size=want.shape).astype(f32)
    out.backward(torch.from_numpy(td))
    want_diff = shuffle_backward(td.astype(np.float64), group).reshape(shape)
    assert relative_error(xt.grad.numpy(), want_diff) == 0


def test_shuffle_channel_order_by_hand() -> None:
    """Channels 0..5 in 3 groups of 2 come out as 0, 2, 4, 1, 3, 5."""
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert M.shuffle_channel(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    x64 = torch.randn(2, 6, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: M.shuffle_channel(t, 3), (x64,))


@pytest.mark.parametrize("shape, group, error, message", [
    ((1, 6, 2, 2), 0, UnsupportedFieldError, r"shuffle_channel_param.group = 0"),
    ((1, 6, 2, 2), 4, UnsupportedFieldError, r"group = 4.*a divisor of the 6 channels"),
    ((1, 6, 2, 2, 2), 2, ShapeError, r"bottom of shape \[1, 6, 2, 2, 2\]; allowed: 2 to 4 axes"),
    ((6,), 2, ShapeError, r"bottom of shape \[6\]; allowed: 2 to 4 axes"),
], ids=["group_0", "not_a_divisor", "five_axes", "one_axis"])
def test_shuffle_channel_refuses_what_the_fork_checks(shape, group, error, message) -> None:
    with pytest.raises(error, match=r"layer 's' \(ShuffleChannel\)") as e:
        caffe_fx.compile(_shuffle_net(shape, group))
    assert e.match(message)


def test_shuffle_channel_in_place_only_as_the_identity() -> None:
    with pytest.raises(NetDefinitionError, match=r"\(ShuffleChannel\): cannot work in place "
                                                 r"with group 3"):
        caffe_fx.compile(_shuffle_net((1, 6, 2, 2), 3, top="data"))
    gm = caffe_fx.compile(_shuffle_net((1, 6, 2, 2), 1, top="data"), outputs=["data"])
    x = torch.randn(1, 6, 2, 2)
    torch.testing.assert_close(gm(data=x)["data"], x)


def test_shuffle_channel_checks_the_channels_of_each_forward() -> None:
    gm = caffe_fx.compile(_shuffle_net((1, 6, 2, 2), 3))
    assert tuple(gm(data=torch.zeros(2, 9, 3, 3))["out"].shape) == (2, 9, 3, 3)
    with pytest.raises(ShapeError, match=r"layer 's' \(ShuffleChannel\): .* has 8 channels, "
                                         r"not a multiple of group 3.*Wrong group size"):
        gm(data=torch.zeros(1, 8, 2, 2))


# -------------------------------------------------------------- DepthwiseConvolution

def conv_forward(x, w, b, stride, pad, dilation, group):
    """im2col + gemm per group, as direct loops (float64)."""
    n_, c_, h, wd = x.shape
    o_, cg, kh, kw = w.shape
    og = o_ // group
    oh = (h + 2 * pad - (dilation * (kh - 1) + 1)) // stride + 1
    ow = (wd + 2 * pad - (dilation * (kw - 1) + 1)) // stride + 1
    xp = np.zeros((n_, c_, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    top = np.zeros((n_, o_, oh, ow))
    for n in range(n_):
        for o in range(o_):
            g = o // og
            for y in range(oh):
                for xx in range(ow):
                    s = 0.0
                    for ci in range(cg):
                        for ky in range(kh):
                            for kx in range(kw):
                                s += w[o, ci, ky, kx] * xp[n, g * cg + ci, y * stride
                                                           + ky * dilation,
                                                           xx * stride + kx * dilation]
                    top[n, o, y, xx] = s + (b[o] if b is not None else 0.0)
    return top


def conv_backward(x, w, td, stride, pad, dilation, group):
    """(bottom diff, weight diff, bias diff): col2im of W^T td, td im2col(x)^T, sum td."""
    n_, c_, h, wd = x.shape
    o_, cg, kh, kw = w.shape
    og = o_ // group
    xp = np.zeros((n_, c_, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for n in range(n_):
        for o in range(o_):
            g = o // og
            for y in range(td.shape[2]):
                for xx in range(td.shape[3]):
                    t = td[n, o, y, xx]
                    for ci in range(cg):
                        for ky in range(kh):
                            for kx in range(kw):
                                r, c = y * stride + ky * dilation, xx * stride + kx * dilation
                                dw[o, ci, ky, kx] += t * xp[n, g * cg + ci, r, c]
                                dxp[n, g * cg + ci, r, c] += t * w[o, ci, ky, kx]
    return dxp[:, :, pad:pad + h, pad:pad + wd], dw, td.sum(axis=(0, 2, 3))


DEPTHWISE = {  # (bottom shape, num_output, group, kernel, stride, pad, dilation, bias)
    "mobilenet_dw": ((2, 4, 5, 5), 4, 4, 3, 1, 1, 1, True),
    "mobilenet_dw_stride2": ((1, 3, 6, 7), 3, 3, 3, 2, 1, 1, False),
    "channel_multiplier": ((1, 2, 4, 4), 4, 2, 3, 1, 1, 1, True),
    "group_below_channels": ((1, 4, 5, 4), 6, 2, 2, 1, 0, 1, True),  # CPU: grouped conv
    "dilated": ((1, 2, 7, 7), 2, 2, 3, 1, 2, 2, True),
}


def _dw_net(shape, num_output, group, kernel, stride, pad, dilation, bias) -> str:
    return _input(shape) + (
        'layer { name: "dw" type: "DepthwiseConvolution" bottom: "data" top: "out"\n'
        f'  convolution_param {{ num_output: {num_output} group: {group} '
        f'kernel_size: {kernel} stride: {stride} pad: {pad} dilation: {dilation} '
        f'bias_term: {"true" if bias else "false"} }} }}\n')


@pytest.mark.parametrize("case", DEPTHWISE, ids=list(DEPTHWISE))
def test_depthwise_convolution_matches_the_forks_cpu_forward_and_backward(case: str) -> None:
    shape, num_output, group, kernel, stride, pad, dilation, bias = DEPTHWISE[case]
    rng = np.random.default_rng(11)
    x = rng.normal(size=shape).astype(f32)
    w = rng.normal(size=(num_output, shape[1] // group, kernel, kernel)).astype(f32)
    b = rng.normal(size=num_output).astype(f32) if bias else None
    gm = caffe_fx.compile(_dw_net(*DEPTHWISE[case]),
                          weights={"dw": [w] + ([b] if bias else [])})
    assert set(gm.state_dict()) == {"dw.weight"} | ({"dw.bias"} if bias else set())
    xt = torch.from_numpy(x).requires_grad_(True)
    out = gm(data=xt)["out"]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    b64 = b.astype(np.float64) if bias else None
    want = conv_forward(x64, w64, b64, stride, pad, dilation, group)
    assert out.shape == want.shape and relative_error(out.detach().numpy(), want) <= 1e-5
    td = rng.normal(size=want.shape).astype(f32)
    out.backward(torch.from_numpy(td))
    dx, dw, db = conv_backward(x64, w64, td.astype(np.float64), stride, pad, dilation, group)
    assert relative_error(xt.grad.numpy(), dx) <= 1e-5
    assert relative_error(gm.dw.weight.grad.numpy(), dw) <= 1e-5
    if bias:
        assert relative_error(gm.dw.bias.grad.numpy(), db) <= 1e-5


def test_depthwise_convolution_gradcheck_in_float64() -> None:
    gm = caffe_fx.compile(_dw_net((1, 3, 4, 4), 3, 3, 3, 2, 1, 1, True)).double()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gm(data=t)["out"], (x,))


@pytest.mark.parametrize("group, message", [
    (3, r"group = 3 must divide both the input channels \(4\) and num_output \(4\)"),
    (0, r"convolution_param.group = 0"),
], ids=["not_a_divisor", "group_0"])
def test_depthwise_convolution_refuses_what_caffe_checks(group: int, message: str) -> None:
    with pytest.raises((ShapeError, UnsupportedFieldError),
                       match=r"layer 'dw' \(DepthwiseConvolution\)") as e:
        caffe_fx.compile(_dw_net((1, 4, 5, 5), 4, group, 3, 1, 1, 1, True))
    assert e.match(message)


def test_a_forward_on_other_channels_names_depthwise_convolution() -> None:
    gm = caffe_fx.compile(_dw_net((1, 4, 5, 5), 4, 4, 3, 1, 1, 1, True))
    with pytest.raises(ShapeError, match=r"layer 'dw' \(DepthwiseConvolution\): bottom of "
                                         r"shape \[1, 3, 5, 5\].*4 channels"):
        gm(data=torch.zeros(1, 3, 5, 5))


def test_depthwise_convolution_in_place_is_refused() -> None:
    net = _dw_net((1, 4, 5, 5), 4, 4, 3, 1, 1, 1, True).replace('top: "out"', 'top: "data"')
    with pytest.raises(NetDefinitionError, match=r"\(DepthwiseConvolution\) cannot work in place"):
        caffe_fx.compile(net)


# ------------------------------------------------------------------------ one net

MOBILE_NET = _input((1, 6, 6, 6)) + """
layer { name: "dw" type: "DepthwiseConvolution" bottom: "data" top: "dw"
        convolution_param { num_output: 6 group: 6 kernel_size: 3 pad: 1 stride: 2 } }
layer { name: "relu6" type: "ReLU6" bottom: "dw" top: "dw" }
layer { name: "shuffle" type: "ShuffleChannel" bottom: "dw" top: "shuffle"
        shuffle_channel_param { group: 3 } }
"""


def test_mobile_net_scripts_and_exports() -> None:
    torch.manual_seed(0)
    gm = caffe_fx.compile(MOBILE_NET)
    assert "caffe_fx_ops_mobile_relu6(dw, top_is_bottom = True)" in gm.code
    x = torch.randn(1, 6, 6, 6) * 4
    with torch.no_grad():
        want = gm(data=x)["shuffle"]
        torch.testing.assert_close(torch.jit.script(gm)(data=x)["shuffle"], want)
        torch.testing.assert_close(
            torch.export.export(gm, (), {"data": x}).module()(data=x)["shuffle"], want)
