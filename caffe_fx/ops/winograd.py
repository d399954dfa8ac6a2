"""3x3 stride-1 convolutions by Winograd's minimal filtering F(4x4, 3x3), for inference on
the CPU (ops/onednn.py takes it where it is faster than oneDNN's direct kernel).

Each 4x4 tile of the output comes from a 6x6 tile of the input: V = B^T d B (input
transform), M = V . U per channel pair, summed over input channels (36 matrix products,
one per tile position), Y = A^T M A (output transform), with U = G g G^T the transformed
3x3 filter, made once per weight in float64 and rounded once.  Per output 36/16 = 2.25
multiplications instead of 9: VGG16's 3x3 convolutions at 28x28 and 56x56 take about
0.55-0.65 of oneDNN's time at batch 1 (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016, for the method).

Rounding differs from a direct convolution's (the transforms add and subtract scaled
copies of the data): 3-5e-6 of the float64 convolution relative to the output's largest
magnitude (1-3e-6 for oneDNN's direct kernel), checked below 1e-5 on the shapes
tests/ops/test_winograd.py draws; a deliberate difference the README lists.
CAFFE_FX_WINOGRAD=0 in the environment (read at import) switches it off.
"""
from __future__ import annotations

import os
from typing import List, Optional

import torch
from torch import Tensor

ENABLED = os.environ.get("CAFFE_FX_WINOGRAD", "1") != "0"
_ONEDNN = torch.backends.mkldnn.is_available()

# Points 0, 1, -1, 2, -1/2 and infinity: the Toom-Cook matrices (A^T: powers of the
# points; G: those over the product of each point's differences to the others; B^T the
# one that makes A^T [(G g) * (B^T d)] the correlation of d with g).  They round about 3
# times less than the usual 0, +-1, +-2 (measured, 3e-6 against 9e-6 relative), and A^T
# and B^T hold only dyadic fractions, exact in float32.
_BT = torch.tensor([[1, 3 / 2, -2, -3 / 2, 1, 0],
                    [0, -1, -5 / 2, -1 / 2, 1, 0],
                    [0, 1, 1 / 2, -5 / 2, 1, 0],
                    [0, -1 / 2, -1, 1 / 2, 1, 0],
                    [0, 2, -1, -2, 1, 0],
                    [0, 1, 3 / 2, -2, -3 / 2, 1]], dtype=torch.float64)
_G = torch.tensor([[1, 0, 0],
                   [-1 / 3, -1 / 3, -1 / 3],
                   [1 / 3, -1 / 3, 1 / 3],
                   [1 / 15, 2 / 15, 4 / 15],
                   [-16 / 15, 8 / 15, -4 / 15],
                   [0, 0, 1]], dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0],
                    [0, 1, -1, 2, -1 / 2, 0],
                    [0, 1, 1, 4, 1 / 4, 0],
                    [0, 1, -1, 8, -1 / 8, 1]], dtype=torch.float64)
# Both 2-D transforms as one matrix on the flattened tile: vec(B^T d B) = (B^T x B^T) vec(d).
_IN = torch.kron(_BT, _BT).float()  # (36, 36); exact in float32 (dyadic fractions)
_OUT = torch.kron(_AT, _AT).float()  # (16, 36); exact too


def applies(x: Tensor, weight: Tensor, stride: List[int], pad: List[int],
            dilation: List[int], groups: int) -> bool:
    """Where F(4x4, 3x3) beats oneDNN's direct kernel on 2 cores (measured per shape and
    per net): 3x3, stride 1, no dilation or groups, pad at most 2, at least 128 channels
    in and 256 out, and 784 output pixels over the batch (28x28 at batch 1): VGG16's
    conv3_1 to conv4_3 (0.5-0.65 of oneDNN's time), ResNet-50's res4 and GoogLeNet's
    inception 4c-4e at batch 8.  Smaller maps or fewer channels leave the 36 products too
    small to run near the machine's peak (VGG16's 14x14 conv5 at batch 1: 4.8 against
    oneDNN's 4.3 ms; 128 to 128 channels at 28x28: no faster)."""
    if not ENABLED or groups != 1 or weight.shape[2] != 3 or weight.shape[3] != 3:
        return False
    if stride[0] != 1 or stride[1] != 1 or dilation[0] != 1 or dilation[1] != 1:
        return False
    if pad[0] > 2 or pad[1] > 2 or weight.shape[0] < 256 or weight.shape[1] < 128:
        return False
    return x.shape[0] * (x.shape[2] + 2 * pad[0] - 2) * (x.shape[3] + 2 * pad[1] - 2) >= 784


def pack(weight: Tensor) -> Tensor:
    """U = G g G^T for each (out, in) filter pair, as (36, out, in) in weight's dtype (for
    each tile position a weight as oneDNN's inner product stores it), computed in float64
    from `weight`, (out, in, 3, 3), 32 output channels at a time (the float64 temporaries
    of a whole 512x512 layer took VGG16's peak memory 0.4 GB up)."""
    k, c = weight.shape[0], weight.shape[1]
    u = torch.empty(36, k, c, dtype=weight.dtype)
    for k0 in range(0, k, 32):
        g = weight[k0:k0 + 32].detach().double()
        part = torch.einsum("ij,kcjl,ml->imkc", _G, g, _G)  # (6, 6, 32, C)
        u[:, k0:k0 + 32] = part.reshape(36, g.shape[0], c)
    return u


# Images per pass: as many as keep the transformed tiles (36 x tiles x channels floats)
# under this, so that a batch's temporaries stay near one image's (VGG16 b8's peak:
# 1201 MB in one pass, Caffe's 1354).
_CHUNK_BYTES = 16 << 20


def conv2d(x: Tensor, u: Tensor, bias: Optional[Tensor], pad: List[int], relu: bool,
           add: Optional[Tensor] = None) -> Tensor:
    """The convolution of `x` (N, C, H, W; channels-last memory) with the packed filters
    `u`, + bias, + `add` (the output's shape), then ReLU; channels-last like oneDNN's."""
    n, c, h, w = x.shape
    k = u.shape[1]
    oh, ow = h + 2 * pad[0] - 2, w + 2 * pad[1] - 2
    th, tw = (oh + 3) // 4, (ow + 3) // 4
    out = torch.empty(n, oh, ow, k, dtype=x.dtype)
    step = max(1, _CHUNK_BYTES // (36 * th * tw * max(c, k) * x.element_size()))
    for i in range(0, n, step):
        _tiles(x[i:i + step], u, pad, th, tw, out[i:i + step], bias)
    if add is not None:
        out.add_(add.permute(0, 2, 3, 1))
    if relu:
        out.relu_()
    return out.permute(0, 3, 1, 2)


def _products(v: Tensor, u: Tensor) -> Tensor:
    """The 36 products v[p] @ u[p]^T, (tiles, C) by (K, C), each by oneDNN's inner product
    (its AVX-512 kernels; MKL's batched sgemm takes none on AMD CPUs and ran them 1.4-1.9x
    slower on a 2-core EPYC, benchmarks/README.md); torch.bmm where oneDNN is absent."""
    if not _ONEDNN:
        return torch.bmm(v, u.transpose(1, 2))
    m = torch.empty(v.shape[0], v.shape[1], u.shape[1], dtype=v.dtype)
    for p in range(v.shape[0]):
        m[p] = torch.ops.mkldnn._linear_pointwise(v[p], u[p], None, "none", [], "")
    return m


def _tiles(x: Tensor, u: Tensor, pad: List[int], th: int, tw: int, out: Tensor,
           bias: Optional[Tensor]) -> None:
    """Writes the convolution of the images `x` (+ bias) into `out` (their NHWC output)."""
    n, c, h, w = x.shape
    k = u.shape[1]
    nhwc = x.permute(0, 2, 3, 1)
    # Pad to whole tiles: 4 t + 2 rows and columns, the convolution's own pad first.
    xp = torch.nn.functional.pad(nhwc, (0, 0, pad[1], 4 * tw + 2 - w - pad[1],
                                        pad[0], 4 * th + 2 - h - pad[0]))
    s = xp.stride()
    tiles = xp.as_strided((n, th, tw, 6, 6, c), (s[0], 4 * s[1], 4 * s[2], s[1], s[2], s[3]))
    d = tiles.permute(3, 4, 0, 1, 2, 5).reshape(36, -1)  # (36, tiles * C)
    v = torch.mm(_IN, d).view(36, -1, c)  # (36, tiles, C)
    m = _products(v, u)  # (36, tiles, K)
    y = torch.mm(_OUT, m.view(36, -1)).view(4, 4, n, th, tw, k)
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, 4 * th, 4 * tw, k)[:, :out.shape[1], :out.shape[2]]
    if bias is not None:
        torch.add(y, bias, out=out)
    else:
        out.copy_(y)
