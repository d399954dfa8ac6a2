"""Goldens for SegNet's BN and Upsample (and the MAX Pooling mask Upsample reads) from
alexgkendall/caffe-segnet, run for real.

    python tools/make_segnet_goldens.py [--only SUBSTRING]

Needs root and ../shared/caffe-oracle with its `segnet` overlay (CAFFE_ORACLE_FORK=segnet).
Each case is one layer fed from legacy `input:` fields with `force_backward: true`, seeded
inputs and seeded top diffs; pycaffe's forward then backward.  BN's scale and shift come
from the case's fillers (the oracle seeds Caffe's RNG).  Upsample's mask bottoms are made
here as a MAX Pooling's would be (one index per pooling cell, inside the top plane).
Writes tests/golden/segnet/<case>.npz with `prototxt`, `phase`, `layer` (the type),
`input/<blob>`, `topdiff/<blob>`, `data/<blob>` (every top but Split's), `diff/<blob>`
(the inputs Caffe differentiates), `param/<layer>/<i>` and `pdiff/<layer>/<i>`.  The
`net_` cases are small whole nets (conv, BN, ReLU, Pooling with its mask, Upsample), as
SegNet's encoder and decoder.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._oracle_goldens import ForkCase as Case, Gen, generate, make_fork_golden  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "segnet"
make = partial(make_fork_golden, folder=GOLDEN, fork="segnet")


def normal(*shape: int, scale: float = 1.0, shift: float = 0.0) -> Gen:
    return lambda r: r.randn(*shape) * scale + shift


def small_ints(*shape: int) -> Gen:
    return lambda r: r.randint(0, 3, size=shape).astype(np.float64)  # ties in every window


def pool_mask(shape: tuple[int, int, int, int], cell: tuple[int, int],
              plane: tuple[int, int]) -> Gen:
    """A mask as MAX Pooling with windows of `cell` would give it: for each bottom pixel
    (h, w), a pixel of the cell [h*ch, (h+1)*ch) x [w*cw, (w+1)*cw) clipped to the top
    `plane`, as its float index row * W_top + col."""
    def gen(r: np.random.RandomState) -> np.ndarray:
        n, c, h, w = shape
        oh, ow = plane
        rows = np.arange(h)[:, None] * cell[0] + r.randint(0, cell[0], size=(n, c, h, w))
        cols = np.arange(w)[None, :] * cell[1] + r.randint(0, cell[1], size=(n, c, h, w))
        rows, cols = np.minimum(rows, oh - 1), np.minimum(cols, ow - 1)
        return (rows * ow + cols).astype(np.float64)
    return gen


def duplicate_mask(shape: tuple[int, int, int, int], plane: int) -> Gen:
    """Indices drawn with repeats (overlapping pooling windows share a maximum): the
    fork's forward keeps the last writer, its backward gives every one the diff."""
    return lambda r: r.randint(0, plane, size=shape).astype(np.float64)


_ONE = 'bottom: "data" top: "out"'
_STATS = 'bottom: "data" top: "out" top: "mean" top: "var"'
_GAUSS = ('bn_param { scale_filler { type: "gaussian" mean: 1 std: 0.5 } '
          'shift_filler { type: "gaussian" std: 0.5 } }')
_CONST = ('bn_param { scale_filler { type: "constant" value: 1.5 } '
          'shift_filler { type: "constant" value: 0.25 } }')
_UP = 'bottom: "data" bottom: "mask" top: "out"'

CASES = [
    # BN, LEARN: batch statistics whatever the phase; tops 2 and 3 get no diff.
    Case("bn_learn_constant", "BN", f"{_ONE} {_CONST}", {"data": normal(2, 3, 4, 5)},
         ("data",), {"out": (2, 3, 4, 5)}),
    Case("bn_learn_gaussian_stats", "BN", f"{_STATS} {_GAUSS}",
         {"data": normal(3, 4, 3, 2, scale=2.0, shift=0.5)}, ("data",),
         {"out": (3, 4, 3, 2), "mean": (1, 4, 1, 1), "var": (1, 4, 1, 1)}),
    Case("bn_learn_mean_top", "BN", f'bottom: "data" top: "out" top: "mean" {_GAUSS}',
         {"data": normal(2, 2, 3, 3)}, ("data",), {"out": (2, 2, 3, 3)}),
    Case("bn_learn_default_fillers", "BN", _STATS, {"data": normal(2, 3, 2, 2)}, ("data",),
         {"out": (2, 3, 2, 2)}),
    Case("bn_learn_train_phase", "BN", f"{_STATS} {_GAUSS}", {"data": normal(2, 3, 3, 4)},
         ("data",), {"out": (2, 3, 3, 4)}, phase="train"),
    Case("bn_learn_2d", "BN", f"{_STATS} {_GAUSS}", {"data": normal(5, 3)}, ("data",),
         {"out": (5, 3, 1, 1)}),
    # BN, INFERENCE: scale * x + shift.
    Case("bn_inference", "BN",
         _ONE + ' bn_param { bn_mode: INFERENCE scale_filler { type: "gaussian" std: 1 } '
         'shift_filler { type: "gaussian" std: 1 } }', {"data": normal(2, 3, 4, 3)},
         ("data",), {"out": (2, 3, 4, 3)}),
    Case("bn_inference_train_phase", "BN",
         _ONE + ' bn_param { bn_mode: INFERENCE scale_filler { type: "constant" value: -2 } '
         'shift_filler { type: "constant" value: 0.5 } }', {"data": normal(2, 2, 3, 3)},
         ("data",), {"out": (2, 2, 3, 3)}, phase="train"),
    # Upsample: top size from scale, scale_h/w, pad_out_h/w or upsample_h/w.
    Case("upsample_scale", "Upsample", f"{_UP} upsample_param {{ scale: 2 }}",
         {"data": normal(2, 3, 3, 4), "mask": pool_mask((2, 3, 3, 4), (2, 2), (6, 8))},
         ("data",), {"out": (2, 3, 6, 8)}),
    Case("upsample_scale_default", "Upsample", _UP,
         {"data": normal(1, 2, 2, 3), "mask": pool_mask((1, 2, 2, 3), (2, 2), (4, 6))},
         ("data",), {"out": (1, 2, 4, 6)}),
    Case("upsample_scale_hw", "Upsample", f"{_UP} upsample_param {{ scale_h: 2 scale_w: 3 }}",
         {"data": normal(2, 2, 3, 3), "mask": pool_mask((2, 2, 3, 3), (2, 3), (6, 9))},
         ("data",), {"out": (2, 2, 6, 9)}),
    Case("upsample_scale3", "Upsample", f"{_UP} upsample_param {{ scale: 3 }}",
         {"data": normal(1, 2, 2, 2), "mask": pool_mask((1, 2, 2, 2), (3, 3), (6, 6))},
         ("data",), {"out": (1, 2, 6, 6)}),
    Case("upsample_pad_out_h", "Upsample",
         f"{_UP} upsample_param {{ scale: 2 pad_out_h: true }}",
         {"data": normal(1, 2, 3, 4), "mask": pool_mask((1, 2, 3, 4), (2, 2), (5, 8))},
         ("data",), {"out": (1, 2, 5, 8)}),
    Case("upsample_pad_out_hw", "Upsample",
         f"{_UP} upsample_param {{ scale_h: 2 scale_w: 2 pad_out_h: true pad_out_w: true }}",
         {"data": normal(2, 1, 4, 3), "mask": pool_mask((2, 1, 4, 3), (2, 2), (7, 5))},
         ("data",), {"out": (2, 1, 7, 5)}),
    Case("upsample_hw", "Upsample", f"{_UP} upsample_param {{ upsample_h: 7 upsample_w: 5 }}",
         {"data": normal(1, 2, 4, 3), "mask": pool_mask((1, 2, 4, 3), (2, 2), (7, 5))},
         ("data",), {"out": (1, 2, 7, 5)}),
    Case("upsample_hw_ignores_scale", "Upsample",
         f"{_UP} upsample_param {{ scale: 3 pad_out_h: true upsample_h: 5 upsample_w: 6 }}",
         {"data": normal(1, 2, 3, 3), "mask": pool_mask((1, 2, 3, 3), (2, 2), (5, 6))},
         ("data",), {"out": (1, 2, 5, 6)}),
    Case("upsample_duplicate_indices", "Upsample", f"{_UP} upsample_param {{ scale: 2 }}",
         {"data": normal(2, 2, 3, 3), "mask": duplicate_mask((2, 2, 3, 3), 36)},
         ("data",), {"out": (2, 2, 6, 6)}),
    # The MAX Pooling mask top Upsample reads: first maximum wins, ceil rounding.
    Case("pool_mask_ties", "Pooling",
         'bottom: "data" top: "out" top: "mask" pooling_param { pool: MAX kernel_size: 3 '
         'stride: 2 pad: 1 }', {"data": small_ints(2, 2, 5, 6)}, ("data",),
         {"out": (2, 2, 3, 4)}),
    Case("pool_mask_ceil", "Pooling",
         'bottom: "data" top: "out" top: "mask" pooling_param { pool: MAX kernel_size: 2 '
         'stride: 2 }', {"data": normal(2, 3, 5, 7)}, ("data",), {"out": (2, 3, 3, 4)}),
]

_W = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 }'
_BN_LEARN = ('param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 1 decay_mult: 0 } '
             'bn_param { scale_filler { type: "gaussian" mean: 1 std: 0.3 } '
             'shift_filler { type: "constant" value: 0.001 } }')

# SegNet's encoder and decoder in miniature, as its prototxts write them: in-place BN
# (LEARN) and ReLU, a MAX Pooling with its mask top, an odd height that pad_out_h undoes.
# The convolutions before a BN have no bias: LEARN subtracts the batch mean, so a bias's
# diff there is 0 up to rounding noise, which no relative tolerance can compare.
_NB = 'weight_filler { type: "gaussian" std: 0.3 } bias_term: false'
SEGNET = f"""
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 {_NB} }} }}
layer {{ name: "conv1_bn" type: "BN" bottom: "conv1" top: "conv1" {_BN_LEARN} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" top: "pool1_mask"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 {_NB} }} }}
layer {{ name: "conv2_bn" type: "BN" bottom: "conv2" top: "conv2" {_BN_LEARN} }}
layer {{ name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }}
layer {{ name: "upsample1" type: "Upsample" bottom: "conv2" bottom: "pool1_mask"
  top: "pool1_D" upsample_param {{ scale: 2 pad_out_h: true }} }}
layer {{ name: "conv1_D" type: "Convolution" bottom: "pool1_D" top: "conv1_D"
  convolution_param {{ num_output: 3 kernel_size: 3 pad: 1 {_W} }} }}
"""
CASES.append(Case("net_segnet_encoder_decoder", "net", "", {"data": normal(2, 3, 7, 8)},
                  ("data",), {"conv1_D": (2, 3, 7, 8)}, net=SEGNET))

# Overlapping pooling windows (kernel 3, stride 2) share maxima: duplicate mask indices.
OVERLAP = f"""
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 3 kernel_size: 3 pad: 1 {_W} }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" top: "pool1_mask"
  pooling_param {{ pool: MAX kernel_size: 3 stride: 2 }} }}
layer {{ name: "upsample1" type: "Upsample" bottom: "pool1" bottom: "pool1_mask"
  top: "up" upsample_param {{ upsample_h: 7 upsample_w: 7 }} }}
"""
CASES.append(Case("net_overlapping_pool_upsample", "net", "", {"data": normal(2, 2, 7, 7)},
                  ("data",), {"up": (2, 3, 7, 7)}, net=OVERLAP))

# INFERENCE in place before an in-place ReLU: the fork's scale diff reads the blob, which
# then holds the rectified top, not the input.
BN_INFER = f"""
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 3 kernel_size: 3 pad: 1 {_W} }} }}
layer {{ name: "conv1_bn" type: "BN" bottom: "conv1" top: "conv1"
  bn_param {{ bn_mode: INFERENCE scale_filler {{ type: "gaussian" std: 1 }}
             shift_filler {{ type: "gaussian" std: 1 }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
"""
CASES.append(Case("net_bn_inference_inplace_relu", "net", "", {"data": normal(2, 2, 4, 4)},
                  ("data",), {"conv1": (2, 3, 4, 4)}, net=BN_INFER))


if __name__ == "__main__":
    generate(CASES, make)
