"""caffe_fx/ops/misc.py: MVN's backward is mvn_layer.cpp's formula.

With eps = 0 that formula is the derivative of the forward (float64 gradcheck); with
eps > 0 it drops the derivative of eps, so it is not; a one-element row gives 0, not NaN.
Real-Caffe values, in place too: tests/layers/test_backward_graph.py.
"""
from __future__ import annotations

import pytest
import torch

from caffe_fx.ops import misc as M


def _x(*shape: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


@pytest.mark.parametrize("across", [False, True], ids=["per_channel", "across_channels"])
def test_formula_is_the_derivative_without_eps(across: bool) -> None:
    fn = lambda x: M.mvn(x, True, across, 0.0)  # noqa: E731
    x = _x(2, 3, 4, 5)
    assert type(fn(x).grad_fn).__name__ == "CaffeMVNBackward"
    assert torch.autograd.gradcheck(fn, (x,))


def test_eps_is_not_differentiated() -> None:
    x = _x(2, 3, 2, 2)
    fn = lambda x: M.mvn(x, True, False, 0.5)  # noqa: E731
    assert not torch.autograd.gradcheck(fn, (x,), raise_exception=False)
    y = fn(x)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    xd = x.detach()
    std = (xd - xd.mean((2, 3), keepdim=True)).pow(2).mean((2, 3), keepdim=True).sqrt() + 0.5
    yd = y.detach()
    want = (dy - dy.mean((2, 3), keepdim=True)
            - yd * (yd * dy).mean((2, 3), keepdim=True)) / std
    torch.testing.assert_close(dx, want)


def test_one_element_rows_stay_finite() -> None:
    x = _x(4, 3)  # per (n, c): one value each, std 0
    y = M.mvn(x, True, False, 1e-9)
    (dx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert torch.equal(dx, torch.zeros_like(dx))


def test_without_variance_torch_differentiates() -> None:
    x = _x(2, 3, 4, 5)
    y = M.mvn(x, False, False, 1e-9)
    assert type(y.grad_fn).__name__ != "CaffeMVNBackward"
    assert torch.autograd.gradcheck(lambda x: M.mvn(x, False, True, 1e-9), (x,))
