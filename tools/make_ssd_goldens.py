"""Goldens for SSD's layers from weiliu89/caffe (branch ssd), run for real.

    python tools/make_ssd_goldens.py [--only SUBSTRING]

Needs root and ../shared/caffe-oracle with its `ssd` overlay (CAFFE_ORACLE_FORK=ssd), which
has CPU code for Permute, Normalize and PriorBox.  Each case is one layer fed from legacy
`input:` fields with `force_backward: true`, seeded inputs and seeded top diffs; pycaffe's
forward then backward.  Normalize's scale comes from the case's scale_filler (the oracle
seeds Caffe's RNG).  Writes tests/golden/ssd/<case>.npz with `prototxt`, `phase`, `layer`
(the type), `input/<blob>`, `topdiff/<blob>`, `data/<blob>` (every top but Split's),
`diff/<blob>` (the inputs Caffe differentiates), `param/<layer>/<i>` and
`pdiff/<layer>/<i>`.  net_ssd_head is a whole net (Convolution, Pooling, Flatten and
Concat around the SSD layers) instead of one layer.
"""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._oracle_goldens import ForkCase as Case, Gen, generate, make_fork_golden  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "ssd"
make = partial(make_fork_golden, folder=GOLDEN, fork="ssd")


def normal(*shape: int, scale: float = 1.0) -> Gen:
    return lambda r: r.randn(*shape) * scale


def zeros(*shape: int) -> Gen:
    return lambda r: np.zeros(shape)  # PriorBox reads only the image's size


def with_zero_pixel(*shape: int) -> Gen:
    def gen(r: np.random.RandomState) -> np.ndarray:
        x = r.randn(*shape)
        x[0, :, 0, 0] = 0.0  # norm sqrt(eps)
        return x
    return gen


_ONE = 'bottom: "data" top: "out"'
_PRIOR = 'bottom: "feat" bottom: "data" top: "prior"'
_GAUSS = 'scale_filler { type: "gaussian" mean: 3 std: 2 }'

CASES = [
    Case("permute_0231", "Permute", _ONE + " permute_param { order: 0 order: 2 order: 3 order: 1 }",
         {"data": normal(2, 3, 4, 5)}, ("data",), {"out": (2, 4, 5, 3)}),
    Case("permute_partial_3d", "Permute", _ONE + " permute_param { order: 2 }",
         {"data": normal(2, 3, 4)}, ("data",), {"out": (4, 2, 3)}),
    Case("permute_identity", "Permute", _ONE + " permute_param { order: 0 order: 1 }",
         {"data": normal(2, 3, 2)}, ("data",), {"out": (2, 3, 2)}),
    Case("normalize_pixel_channel_scale", "Normalize",
         _ONE + f" norm_param {{ across_spatial: false channel_shared: false {_GAUSS} }}",
         {"data": normal(2, 4, 3, 3)}, ("data",), {"out": (2, 4, 3, 3)}),
    Case("normalize_pixel_shared", "Normalize",
         _ONE + ' norm_param { across_spatial: false scale_filler { type: "constant" '
         'value: 2.5 } }', {"data": normal(2, 4, 3, 3)}, ("data",), {"out": (2, 4, 3, 3)}),
    Case("normalize_spatial_channel_scale", "Normalize",
         _ONE + f" norm_param {{ channel_shared: false {_GAUSS} }}",
         {"data": normal(2, 3, 2, 4)}, ("data",), {"out": (2, 3, 2, 4)}),
    Case("normalize_spatial_shared_default", "Normalize", _ONE,
         {"data": normal(2, 3, 2, 4)}, ("data",), {"out": (2, 3, 2, 4)}),
    Case("normalize_2d", "Normalize",
         _ONE + f" norm_param {{ across_spatial: false channel_shared: false {_GAUSS} }}",
         {"data": normal(3, 5)}, ("data",), {"out": (3, 5)}),
    Case("normalize_eps_zero_pixel", "Normalize",
         _ONE + f" norm_param {{ across_spatial: false channel_shared: false eps: 0.01 "
         f"{_GAUSS} }}", {"data": with_zero_pixel(1, 3, 2, 2)}, ("data",), {"out": (1, 3, 2, 2)}),
    Case("prior_box_ssd300", "PriorBox",
         _PRIOR + " prior_box_param { min_size: 30.5 max_size: 60.7 aspect_ratio: 2 flip: true "
         "clip: true variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 }",
         {"feat": normal(1, 2, 3, 4), "data": zeros(1, 3, 30, 40)}),
    Case("prior_box_two_sizes_noflip", "PriorBox",
         _PRIOR + " prior_box_param { min_size: 10 min_size: 20.9 max_size: 15 max_size: 33 "
         "aspect_ratio: 2 aspect_ratio: 3 aspect_ratio: 2 flip: false variance: 0.2 "
         "offset: 0.3 step: 8 }", {"feat": normal(1, 1, 3, 2), "data": zeros(1, 1, 20, 24)}),
    Case("prior_box_img_size_one_bottom", "PriorBox",
         'bottom: "feat" top: "prior" prior_box_param { min_size: 12 aspect_ratio: 2 '
         "aspect_ratio: 0.5 img_size: 40 }", {"feat": normal(1, 2, 2, 3)}),
    Case("prior_box_img_hw_step_hw", "PriorBox",
         _PRIOR + " prior_box_param { min_size: 16 max_size: 40 aspect_ratio: 3 img_h: 50 "
         "img_w: 60 step_h: 12 step_w: 10 offset: 0 }",
         {"feat": normal(1, 2, 4, 5), "data": zeros(1, 3, 8, 8)}),
]

# A whole net (held to 1e-4): an SSD head in miniature: two feature maps (one Normalize'd, as SSD's conv4_3), their
# location predictions permuted and flattened, and their priors concatenated.
_G = 'weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 }'
SSD_HEAD = f"""
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param {{ num_output: 4 kernel_size: 3 pad: 1 {_G} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }}
layer {{ name: "norm" type: "Normalize" bottom: "conv1" top: "norm"
  norm_param {{ across_spatial: false channel_shared: false {_GAUSS} }} }}
layer {{ name: "loc1" type: "Convolution" bottom: "norm" top: "loc1"
  convolution_param {{ num_output: 8 kernel_size: 3 pad: 1 {_G} }} }}
layer {{ name: "loc1_perm" type: "Permute" bottom: "loc1" top: "loc1_perm"
  permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "loc1_flat" type: "Flatten" bottom: "loc1_perm" top: "loc1_flat" }}
layer {{ name: "prior1" type: "PriorBox" bottom: "norm" bottom: "data" top: "prior1"
  prior_box_param {{ min_size: 4 max_size: 8 clip: true variance: 0.1 variance: 0.1
                     variance: 0.2 variance: 0.2 }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "loc2" type: "Convolution" bottom: "pool1" top: "loc2"
  convolution_param {{ num_output: 12 kernel_size: 1 {_G} }} }}
layer {{ name: "loc2_perm" type: "Permute" bottom: "loc2" top: "loc2_perm"
  permute_param {{ order: 0 order: 2 order: 3 order: 1 }} }}
layer {{ name: "loc2_flat" type: "Flatten" bottom: "loc2_perm" top: "loc2_flat" }}
layer {{ name: "prior2" type: "PriorBox" bottom: "pool1" bottom: "data" top: "prior2"
  prior_box_param {{ min_size: 8 aspect_ratio: 2 flip: true variance: 0.1 variance: 0.1
                     variance: 0.2 variance: 0.2 }} }}
layer {{ name: "loc" type: "Concat" bottom: "loc1_flat" bottom: "loc2_flat" top: "loc"
  concat_param {{ axis: 1 }} }}
layer {{ name: "priors" type: "Concat" bottom: "prior1" bottom: "prior2" top: "priors"
  concat_param {{ axis: 2 }} }}
"""
CASES.append(Case("net_ssd_head", "net", "", {"data": normal(2, 3, 8, 8)}, ("data",),
                  {"loc": (2, 8 * 8 * 8 + 4 * 4 * 12)}, net=SSD_HEAD))

# Normalize's scale diff reads its top's data, which an in-place ReLU after it rewrites.
NORM_RELU = f"""
layer {{ name: "norm" type: "Normalize" bottom: "data" top: "norm"
  norm_param {{ across_spatial: false channel_shared: false {_GAUSS} }} }}
layer {{ name: "relu" type: "ReLU" bottom: "norm" top: "norm" }}
"""
CASES.append(Case("net_normalize_inplace_relu", "net", "", {"data": normal(2, 3, 3, 3)},
                  ("data",), {"norm": (2, 3, 3, 3)}, net=NORM_RELU))


if __name__ == "__main__":
    generate(CASES, make)
