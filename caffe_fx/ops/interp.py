"""Interp, DeepLab v2's bilinear resize, as hszhao/PSPNet ships it.

Mirrors the fork's src/caffe/layers/interp_layer.cpp (Reshape's output sizes; pad_beg
and pad_end <= 0 crop the input: rows and columns from -pad_beg to in + pad_end, both
axes) and src/caffe/util/interp.cpp (caffe_cpu_interp2: "align corners" bilinear, ratio
(in - 1) / (out - 1) in float, source index int(ratio * o), weights ratio * o - index,
the last row and column reading themselves).  That is torch's bilinear interpolation with
align_corners=True, whose backward is the fork's caffe_cpu_interp2_backward (the adjoint,
accumulated into a zeroed diff, so the cropped-off border gets 0).  Sizes are re-read
from the input on every call, as Caffe re-runs Reshape before every Forward.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._shape_check import dims, legacy_shape, wrong_shape

# How Reshape picks the output size, in its order of tests (TorchScript reads only
# literals, so interp_size spells them out).
SHRINK = "shrink"  # shrink_factor alone: (in_eff - 1) / shrink + 1
ZOOM = "zoom"  # zoom_factor alone: in_eff + (in_eff - 1) (zoom - 1)
SIZE = "size"  # height and width (when not exactly one factor is set)
SHRINK_ZOOM = "shrink_zoom"  # both factors: shrink, then zoom


def interp_size(mode: str, h_eff: int, w_eff: int, height: int, width: int, zoom: int,
                shrink: int) -> Tuple[int, int]:
    """InterpLayer::Reshape's (height_out, width_out) from the cropped input size."""
    if mode == "size":
        return height, width
    h_out, w_out = h_eff, w_eff
    if mode == "shrink" or mode == "shrink_zoom":
        # C++ int division; h_eff > 0 here, so it is floor division.
        h_out = (h_out - 1) // shrink + 1
        w_out = (w_out - 1) // shrink + 1
    if mode == "zoom" or mode == "shrink_zoom":
        h_out = h_out + (h_out - 1) * (zoom - 1)
        w_out = w_out + (w_out - 1) * (zoom - 1)
    return h_out, w_out


@torch.fx.wrap
def interp(x: Tensor, mode: str, height: int = 0, width: int = 0, zoom: int = 1,
           shrink: int = 1, pad_beg: int = 0, pad_end: int = 0, layer: str = "") -> Tensor:
    """Interp's top (N, C, height_out, width_out) from bottom x (read, as the fork does,
    through the legacy num/channels/height/width: 1 to 4 axes, missing ones 1)."""
    if x.dim() > 4 or x.dim() < 1:
        wrong_shape(layer, "Interp", "bottom of shape " + dims(x) + "; allowed: 1 to 4 axes",
                    "Cannot use legacy accessors on Blobs with > 4 axes.")
    shape = legacy_shape([int(d) for d in x.shape])
    x4 = x.reshape(shape)
    h_in, w_in = shape[2], shape[3]
    h_eff = h_in + pad_beg + pad_end
    w_eff = w_in + pad_beg + pad_end
    if h_eff <= 0 or w_eff <= 0:
        wrong_shape(layer, "Interp", "bottom of shape " + dims(x) + " cropped by pad_beg "
                    + str(pad_beg) + " and pad_end " + str(pad_end) + " leaves "
                    + str(h_eff) + " x " + str(w_eff), "height should be positive")
    h_out, w_out = interp_size(mode, h_eff, w_eff, height, width, zoom, shrink)
    if pad_beg != 0 or pad_end != 0:
        x4 = x4[:, :, -pad_beg:h_in + pad_end, -pad_beg:w_in + pad_end]
    return F.interpolate(x4, size=[h_out, w_out], mode="bilinear", align_corners=True)
