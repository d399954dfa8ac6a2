"""caffe_fx/ops/neuron.py: Caffe's Backward_cpu of the neuron layers.

Not in place, each formula of src/caffe/layers/<name>_layer.cpp is the derivative of its
forward, which `torch.autograd.gradcheck` confirms in float64.  In place, Caffe reads the
overwritten data (and Power and Log lose the incoming diff): checked against the same
formulas written out here; the real-Caffe values are in tests/layers/test_backward_graph.py.
"""
from __future__ import annotations

import pytest
import torch

from caffe_fx.ops import neuron as N


def _x(*shape: int, seed: int = 0, lo: float = -2.0, hi: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo
    return x.requires_grad_(True)


SMOOTH = {
    "sigmoid": (lambda x: N.sigmoid(x), -3.0, 3.0),
    "tanh": (lambda x: N.tanh(x), -3.0, 3.0),
    "elu": (lambda x: N.elu(x, alpha=0.7), 0.05, 2.0),  # away from the kink at 0
    "elu_negative": (lambda x: N.elu(x, alpha=0.7), -2.0, -0.05),
    "leaky_relu": (lambda x: N.leaky_relu(x, negative_slope=-0.3), 0.05, 2.0),
    "bnll": (lambda x: N.bnll(x), -3.0, 3.0),
    "swish": (lambda x: N.swish(x, beta=1.5), -3.0, 3.0),
    "power_general": (lambda x: N.power(x, power=1.5, scale=0.7, shift=2.0), 0.0, 2.0),
    "power_square": (lambda x: N.power(x, power=2.0, scale=0.5, shift=1.0), -2.0, 2.0),
    "power_noshift": (lambda x: N.power(x, power=3.0, scale=0.5, shift=0.0), 0.1, 2.0),
    "power_linear": (lambda x: N.power(x, power=1.0, scale=-2.0, shift=0.3), -2.0, 2.0),
    "exp": (lambda x: N.scaled_exp(x, inner_scale=0.35, outer_scale=1.07), -2.0, 2.0),
    "log": (lambda x: N.scaled_log(x, scale=0.5, shift=1.5, base_scale=0.43), -2.0, 2.0),
    "clip": (lambda x: N.clip(x, min=-10.0, max=10.0), -2.0, 2.0),
}


@pytest.mark.parametrize("name", sorted(SMOOTH))
def test_caffe_backward_is_the_derivative(name: str) -> None:
    fn, lo, hi = SMOOTH[name]
    x = _x(3, 4, lo=lo, hi=hi)
    assert type(fn(x).grad_fn).__name__ == "CaffeNeuronBackward"  # Caffe's formula runs
    assert torch.autograd.gradcheck(fn, (x,))


def test_plain_forward_without_grad() -> None:
    x = _x(3, 4)
    with torch.no_grad():
        y = N.sigmoid(x)
    assert y.grad_fn is None
    torch.testing.assert_close(N.sigmoid(x), y, rtol=0, atol=0)  # same numbers both ways


def test_in_place_relu_tests_the_output() -> None:
    """relu_layer.cpp in place: bottom_data > 0 on the output; with a negative slope the
    negatives came out positive, so they pass their diff unscaled."""
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    N.leaky_relu(x, negative_slope=-0.5, top_is_bottom=True).backward(torch.ones(5))
    assert x.grad.tolist() == [1.0, 1.0, -0.5, 1.0, 1.0]


def test_in_place_clip_passes_every_diff() -> None:
    x = torch.tensor([-3.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    N.clip(x, min=-1.0, max=1.0, top_is_bottom=True).backward(torch.tensor([1.0, 2.0, 3.0]))
    assert x.grad.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("name,fn,factor", [
    ("log", lambda x: N.scaled_log(x, 0.5, 1.5, 0.43, top_is_bottom=True),
     lambda y: 0.5 * 0.43 / (0.5 * y + 1.5)),
    ("power", lambda x: N.power(x, 1.5, 0.7, 2.0, top_is_bottom=True),
     lambda y: 1.5 * 0.7 * y / (0.7 * y + 2.0)),
    ("power_noshift", lambda x: N.power(x, 3.0, 0.5, 0.0, top_is_bottom=True),
     lambda y: 3.0 * y / y),
])
def test_in_place_power_and_log_square_the_factor(name, fn, factor) -> None:
    """In place the top diff is the bottom diff that Backward_cpu has just overwritten
    with the factor: the result is factor^2 (of the output), whatever diff came in."""
    x = _x(3, 4, lo=0.2, hi=2.0)
    y = fn(x)
    (g1,) = torch.autograd.grad(y, x, torch.ones_like(y), retain_graph=True)
    (g2,) = torch.autograd.grad(y, x, torch.full_like(y, 5.0))
    want = factor(y.detach()) ** 2
    torch.testing.assert_close(g1, want)
    torch.testing.assert_close(g2, want)


def test_chain_reads_the_data_a_later_in_place_layer_wrote() -> None:
    """Sigmoid, then TanH and Power in place on its top: Sigmoid's and TanH's backward
    read the blob's final data z (sigmoid_layer.cpp, tanh_layer.cpp read top_data), and
    Power's ignores the diff it is given."""
    x = _x(3, 4)
    s = N.sigmoid(x)
    t = N.tanh(s, top_is_bottom=True)
    z = N.power(t, 2.0, 1.0, 0.5, top_is_bottom=True)
    dz = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    z.backward(dz)
    zd = z.detach()
    dt = (2.0 * zd + 1.0) ** 2  # Power(2) in place: the factor 2 (z + 0.5), squared
    ds = dt * (1.0 - zd * zd)
    torch.testing.assert_close(x.grad, ds * zd * (1.0 - zd))


def test_no_chain_without_in_place() -> None:
    x = _x(3, 4)
    s = N.sigmoid(x)
    N.tanh(s).sum().backward()  # a new blob: Sigmoid reads its own top
    sd = s.detach()
    torch.testing.assert_close(x.grad, (1.0 - torch.tanh(sd) ** 2) * sd * (1.0 - sd))


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_scripted_ops_run_the_forward() -> None:
    for fn in (N.sigmoid, N.tanh, N.bnll):
        scripted = torch.jit.script(fn)
        x = torch.randn(5)
        torch.testing.assert_close(scripted(x, True), fn(x), rtol=0, atol=0)
