"""caffe_fx/ops/lrn.py: LRN in place differentiates as lrn_layer.cpp's CPU backward on
the overwritten output (real-Caffe values: tests/layers/test_backward_graph.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from caffe_fx.ops import lrn as L


def _x() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64).requires_grad_(True)


def test_within_channel_not_in_place_is_torchs_derivative() -> None:
    assert torch.autograd.gradcheck(lambda x: L.lrn_within_channel(x, 3, 0.5, 0.75), (_x(),))


def test_across_in_place_loses_the_incoming_diff() -> None:
    """CrossChannelBackward_cpu's first caffe_mul squares scale^-beta in the shared diff."""
    x = _x()
    y = L.lrn_across_channels_inplace(x, 3, 0.5, 0.75, 2.0)
    (g1,) = torch.autograd.grad(y, x, torch.ones_like(y), retain_graph=True)
    (g2,) = torch.autograd.grad(y, x, torch.full_like(y, 3.0))
    torch.testing.assert_close(g1, g2)
    xd = x.detach()
    scale = 2.0 + 0.5 / 3 * F.avg_pool3d(F.pad((xd * xd).unsqueeze(1), [0, 0, 0, 0, 1, 1]),
                                         [3, 1, 1], 1).squeeze(1) * 3
    d = scale ** -1.5
    yd = y.detach()
    ratio = F.avg_pool3d(F.pad((d * yd / scale).unsqueeze(1), [0, 0, 0, 0, 1, 1]),
                         [3, 1, 1], 1).squeeze(1) * 3
    torch.testing.assert_close(g1, d - 2 * 0.5 * 0.75 / 3 * yd * ratio)


def test_within_in_place_reads_the_output() -> None:
    x = _x()
    y = L.lrn_within_channel_inplace(x, 3, 0.5, 0.75)
    torch.testing.assert_close(y, L.lrn_within_channel(x, 3, 0.5, 0.75), rtol=0, atol=0)
    dy = torch.randn_like(y)
    (dx,) = torch.autograd.grad(y, x, dy)
    xd, yd = x.detach(), y.detach()
    scale = F.avg_pool2d(xd * xd, 3, 1, 1, False, True) * 0.5 + 1.0
    p = scale ** -0.75
    g_sq = F.avg_pool2d(-0.75 * 0.5 * p / scale * yd * dy, 3, 1, 1, False, True)
    torch.testing.assert_close(dx, p * dy + 2 * yd * g_sq)  # x's place taken by y


def test_across_not_in_place_is_torchs_lrn_with_caffes_backward() -> None:
    # CaffeLRNAcross: F.local_response_norm's values; its hand-written backward
    # (CrossChannelBackward_cpu) is the derivative, windows wider than the channels too.
    for size, alpha, beta, k in ((5, 2.5, 0.75, 2.0), (9, 3.0, 1.2, 0.5), (1, 0.7, 0.6, 1.0)):
        x = _x()
        y = L.lrn_across_channels(x, size, alpha, beta, k)
        assert y.grad_fn is not None and "CaffeLRNAcross" in type(y.grad_fn).__name__
        torch.testing.assert_close(y, F.local_response_norm(x, size, alpha, beta, k))
        assert torch.autograd.gradcheck(
            lambda t, s=size, a=alpha, b=beta, kk=k: L.lrn_across_channels(t, s, a, b, kk), (x,))


def test_across_keeps_the_nhwc_layout() -> None:
    x = _x().detach().float().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = L.lrn_across_channels(x, 3, 1.0, 0.75, 1.0)
    y.backward(torch.ones_like(y))
    assert y.is_contiguous(memory_format=torch.channels_last)
    ref = x.detach().clone().requires_grad_(True)
    F.local_response_norm(ref, 3, 1.0, 0.75, 1.0).backward(torch.ones_like(y))
    torch.testing.assert_close(x.grad, ref.grad)
