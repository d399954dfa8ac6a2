"""caffe_fx/ops/eltwise.py: Eltwise MAX's backward routes each diff through Caffe's mask
(eltwise_layer.cpp): a tie between bottoms 0 and 1 goes to bottom 1, a later bottom takes
over only where strictly greater.  Without ties that is the derivative (gradcheck)."""
from __future__ import annotations

import torch

from caffe_fx.ops import eltwise as E


def test_without_ties_it_is_the_derivative() -> None:
    g = torch.Generator().manual_seed(0)
    xs = tuple(torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_(True)
               for _ in range(3))
    assert torch.autograd.gradcheck(lambda *xs: E.eltwise_max(list(xs)), xs)


def test_ties_follow_caffes_mask() -> None:
    a = torch.tensor([1.0, 2.0, 0.0, 3.0], requires_grad=True)
    b = torch.tensor([1.0, 1.0, 0.0, 3.0], requires_grad=True)
    c = torch.tensor([0.0, 2.0, 0.0, 4.0], requires_grad=True)
    y = E.eltwise_max([a, b, c])
    torch.testing.assert_close(y, torch.tensor([1.0, 2.0, 0.0, 4.0]), rtol=0, atol=0)
    y.backward(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert a.grad.tolist() == [0.0, 2.0, 0.0, 0.0]  # 0 vs 1 tie: bottom 1; 2 > 1: bottom 0
    assert b.grad.tolist() == [1.0, 0.0, 3.0, 0.0]  # the later tie with c stays with b
    assert c.grad.tolist() == [0.0, 0.0, 0.0, 4.0]


def test_two_bottoms_tie_goes_to_the_second() -> None:
    a = torch.zeros(3, requires_grad=True)
    b = torch.zeros(3, requires_grad=True)
    E.eltwise_max([a, b]).backward(torch.ones(3))
    assert a.grad.tolist() == [0.0] * 3 and b.grad.tolist() == [1.0] * 3
