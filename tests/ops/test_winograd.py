"""ops/winograd.py: F(4x4, 3x3) against the float64 convolution Caffe's conv_layer
computes (im2col + GEMM: the plain sum over channels and the 3x3 window), on the shapes
and paddings it may take, and where ops/onednn.py routes to it."""
import os
import subprocess
import sys

import pytest
import torch

from caffe_fx.ops import onednn, winograd

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")


def _relative(got, want):
    return ((got.double() - want).abs().max() / want.abs().max()).item()


def test_the_transforms_compute_a_correlation():
    """A^T [(G g) * (B^T d)] is the 4 outputs of correlating 6 inputs with 3 taps."""
    torch.manual_seed(0)
    for _ in range(20):
        d, g = torch.randn(6, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
        got = winograd._AT @ ((winograd._G @ g) * (winograd._BT @ d))
        want = torch.stack([(d[i:i + 3] * g).sum() for i in range(4)])
        assert torch.allclose(got, want, rtol=0, atol=1e-12)
    # The data transforms are exact in float32: only the filter's U is rounded.
    assert torch.equal(winograd._IN.double(), torch.kron(winograd._BT, winograd._BT))
    assert torch.equal(winograd._OUT.double(), torch.kron(winograd._AT, winograd._AT))


@pytest.mark.parametrize("n, c, k, h, w, pad", [
    (1, 32, 48, 28, 28, 1),  # whole tiles
    (2, 16, 24, 13, 10, 1),  # a partial last tile each way, batch 2
    (1, 8, 16, 9, 11, 0),  # no padding
    (1, 8, 16, 7, 6, 2),  # pad 2: output larger than the input
])
@pytest.mark.parametrize("relu, bias, add", [(True, True, False), (False, False, True)])
def test_matches_the_float64_convolution(n, c, k, h, w, pad, relu, bias, add):
    torch.manual_seed(n * 1000 + c + h)
    x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(k, c, 3, 3) * (2 / (9 * c)) ** 0.5
    b = torch.randn(k) if bias else None
    want = torch.nn.functional.conv2d(x.double(), weight.double(),
                                      None if b is None else b.double(), 1, pad)
    extra = torch.randn(want.shape).contiguous(memory_format=torch.channels_last) \
        if add else None
    if extra is not None:
        want = want + extra.double()
    if relu:
        want = torch.relu(want)
    got = winograd.conv2d(x, winograd.pack(weight), b, [pad, pad], relu, extra)
    assert got.shape == want.shape and got.dtype == torch.float32
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert _relative(got, want) <= 1e-5


@pytest.mark.parametrize("n, c, k, h, stride, dilation, groups, pad, taken", [
    (1, 256, 256, 56, 1, 1, 1, 1, True),  # VGG16 conv3_2
    (1, 128, 256, 56, 1, 1, 1, 1, True),  # VGG16 conv3_1
    (1, 512, 512, 28, 1, 1, 1, 1, True),  # VGG16 conv4_2
    (1, 512, 512, 14, 1, 1, 1, 1, False),  # VGG16 conv5: too few pixels at batch 1
    (8, 256, 256, 14, 1, 1, 1, 1, True),  # ResNet-50 res4 at batch 8
    (1, 128, 128, 28, 1, 1, 1, 1, False),  # too few output channels
    (1, 64, 256, 56, 1, 1, 1, 1, False),  # too few input channels
    (1, 256, 256, 56, 2, 1, 1, 1, False),  # strided
    (1, 256, 256, 56, 1, 2, 1, 2, False),  # dilated
    (1, 256, 256, 56, 1, 1, 2, 1, False),  # grouped
    (1, 256, 256, 56, 1, 1, 1, 3, False),  # pad beyond the tile's margin
])
def test_where_it_applies(n, c, k, h, stride, dilation, groups, pad, taken):
    x = torch.empty(n, c, h, h)
    weight = torch.empty(k, c // groups, 3, 3)
    assert winograd.applies(x, weight, [stride] * 2, [pad] * 2, [dilation] * 2,
                            groups) is taken
    assert not winograd.applies(x, torch.empty(k, c // groups, 5, 5), [stride] * 2,
                                [pad] * 2, [dilation] * 2, groups)


def test_the_prepacked_convolution_takes_it():
    """onednn.conv2d (every fused chain and CaffeConv without autograd) packs U once for
    a shape it applies to, folds the BatchNorm first, and answers within 1e-5 of the
    float64 chain; a shape it does not apply to keeps oneDNN's reordered weight."""
    torch.manual_seed(1)
    x = torch.randn(1, 128, 28, 28).contiguous(memory_format=torch.channels_last)
    weight = torch.nn.Parameter(torch.randn(256, 128, 3, 3) * (2 / 1152) ** 0.5)
    mean, var = torch.randn(256), torch.rand(256) + 0.5
    factor = torch.tensor([2.0])
    gamma, beta = torch.nn.Parameter(torch.rand(256) + 0.5), torch.nn.Parameter(torch.randn(256))
    fold = (mean, var, factor, gamma, beta, 1e-5)
    with torch.no_grad():
        got = onednn.conv2d(x, weight, None, [1, 1], [1, 1], [1, 1], 1, True, fold=fold)
        packed = onednn._CACHE.get(weight)[1]
        assert packed.shape == (36, 256, 128) and packed.dtype == torch.float32
        assert torch.equal(onednn.conv2d(x, weight, None, [1, 1], [1, 1], [1, 1], 1, True,
                                         fold=fold), got)
        assert onednn._CACHE.get(weight)[1] is packed  # packed once
    y = torch.nn.functional.conv2d(x.double(), weight.double(), None, 1, 1)
    y = (y - (mean / 2).double().view(1, -1, 1, 1)) / torch.sqrt(
        (var / 2).double().view(1, -1, 1, 1) + 1e-5)
    want = torch.relu(y * gamma.double().view(1, -1, 1, 1) + beta.double().view(1, -1, 1, 1))
    assert _relative(got, want) <= 1e-5
    small = torch.randn(1, 128, 14, 14).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        onednn.conv2d(small, weight, None, [1, 1], [1, 1], [1, 1], 1, True, fold=fold)
    assert onednn._CACHE.get(weight)[1].dim() == 4  # oneDNN's own layout again


def test_the_environment_switches_it_off():
    code = ("import torch; from caffe_fx.ops import winograd; "
            "print(winograd.ENABLED, winograd.applies(torch.empty(1, 256, 56, 56), "
            "torch.empty(256, 256, 3, 3), [1, 1], [1, 1], [1, 1], 1))")
    env = dict(os.environ, CAFFE_FX_WINOGRAD="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_batch_runs_a_few_images_at_a_time(monkeypatch):
    """Big batches go through in chunks of images (temporaries bounded): the same
    answer as one pass, every image within 1e-5 of the float64 convolution."""
    torch.manual_seed(2)
    x = torch.randn(5, 16, 12, 12).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(24, 16, 3, 3) * 0.1, torch.randn(24)
    u = winograd.pack(weight)
    whole = winograd.conv2d(x, u, bias, [1, 1], True)
    seen = []
    tiles = winograd._tiles
    monkeypatch.setattr(winograd, "_tiles", lambda x, *a: seen.append(len(x)) or tiles(x, *a))
    monkeypatch.setattr(winograd, "_CHUNK_BYTES", 36 * 9 * 24 * 4 * 2)  # two images
    parts = winograd.conv2d(x, u, bias, [1, 1], True)
    assert seen == [2, 2, 1]
    want = torch.relu(torch.nn.functional.conv2d(x.double(), weight.double(), bias.double(),
                                                 1, 1))
    assert _relative(parts, want) <= 1e-5 and _relative(whole, want) <= 1e-5
    torch.testing.assert_close(parts, whole, rtol=0, atol=1e-6)


def test_the_products_equal_torch_bmm():
    """The 36 per-position products by oneDNN's inner product equal torch.bmm's within
    float32 rounding of the sum (both sum C products per output)."""
    torch.manual_seed(3)
    v, u = torch.randn(36, 49, 128), torch.randn(36, 256, 128)
    got = winograd._products(v, u)
    want = torch.bmm(v.double(), u.double().transpose(1, 2))
    assert got.shape == (36, 49, 256)
    assert _relative(got, want) <= 1e-6
