"""Caffe-exact functionals for SSD's layers (weiliu89/caffe, branch ssd).

Each mirrors one source file of the fork, named in its docstring: permute_layer.cpp,
normalize_layer.cpp, prior_box_layer.cpp.  All re-read sizes from their inputs on every
call, as Caffe re-runs Reshape before every Forward.  Normalize differentiates as the fork
does, which is not the derivative of its forward when the scale is per channel.
"""
from __future__ import annotations

from typing import Any, List, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._shape_check import legacy_shape
from .caffe_grad import caffe_grad, keep_top


@torch.fx.wrap
def permute(x: Tensor, order: List[int]) -> Tensor:
    """Permute (permute_layer.cpp): top axis i is bottom axis order[i]; its backward
    scatters the top diff back, which is the transpose autograd gives."""
    return x.permute(order).contiguous()


# ------------------------------------------------------------------------- Normalize

def _as4d(x: Tensor) -> Tensor:
    """Caffe's legacy num/channels/height/width view of a 2- to 4-D blob."""
    shape = legacy_shape(list(x.shape))
    return x.reshape(shape)


def _norm(x: Tensor, across_spatial: bool, eps: float) -> Tensor:
    """sqrt(sum x^2 + eps): one per item (across_spatial) or per pixel (N, 1, H, W)."""
    if across_spatial:
        return ((x * x).sum([1, 2, 3], keepdim=True) + eps).sqrt()
    return ((x * x).sum(1, keepdim=True) + eps).sqrt()


def _scale4d(scale: Tensor) -> Tensor:
    return scale.reshape([1, -1, 1, 1]) if scale.dim() == 1 else scale.reshape([1, 1, 1, 1])


def _normalize(x4: Tensor, scale: Tensor, across_spatial: bool, eps: float
               ) -> Tuple[Tensor, Tensor]:
    norm = _norm(x4, across_spatial, eps)
    # Forward_cpu: caffe_cpu_scale by 1 / norm across the item, caffe_div per pixel.
    y = x4 * (1.0 / norm) if across_spatial else x4 / norm
    return y * _scale4d(scale), norm


class CaffeNormalize(torch.autograd.Function):
    """Normalize with normalize_layer.cpp's Backward_cpu.  Bottom: scale_c (td - x a / n^2)
    / n with a = sum x td over the normalised span, which leaves the per-channel scales out
    of `a` (the true derivative has sum scale_k x_k td_k); the same when the scale is
    shared.  Scale: sum(top * td) / scale (per channel, or over everything when shared),
    with the top's data as backward finds it (a later in-place ReLU has rectified it)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor, across_spatial: bool, eps: float
                ) -> Tensor:
        x4 = _as4d(x)
        y, norm = _normalize(x4, scale, across_spatial, eps)
        ctx.across_spatial, ctx.in_shape = across_spatial, x.shape
        # The top is not saved (the builder may run a ReLU in place on it): the blob
        # record of keep_top sees it as Caffe's backward does, else it is recomputed.
        ctx.save_for_backward(x4, scale, norm)
        top = y if x.dim() == 4 else y.reshape(x.shape).clone()  # not a view of y
        keep_top(ctx, x, top, False)
        return top

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, dy: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor], None, None]:
        x4, scale, norm = ctx.saved_tensors
        # Backward_cpu reads the top as it is then: after any later in-place layer on it.
        blob = getattr(ctx, "caffe_blob", None)
        y = _as4d(blob.value) if blob is not None else \
            (x4 * (1.0 / norm) if ctx.across_spatial else x4 / norm) * _scale4d(scale)
        td = _as4d(dy)
        s4 = _scale4d(scale)
        dx = dscale = None
        if ctx.needs_input_grad[0]:
            dims = [1, 2, 3] if ctx.across_spatial else [1]
            a = (x4 * td).sum(dims, keepdim=True)
            if ctx.across_spatial:
                d = (td - x4 * (a / norm / norm)) * (1.0 / norm)
            else:
                d = (td - x4 * a / (norm * norm)) / norm
            dx = (d * s4).reshape(ctx.in_shape)
        if ctx.needs_input_grad[1]:
            if scale.dim() == 0:
                dscale = (y * td).sum() / scale
            else:
                dscale = (y * td).sum([0, 2, 3]) / scale
        return dx, dscale, None, None


def normalize(x: Tensor, scale: Tensor, across_spatial: bool, eps: float) -> Tensor:
    """Normalize (normalize_layer.cpp): y = scale x / sqrt(sum x^2 + eps) over each item
    (across_spatial) or over the channels of each pixel; `scale` is 0-D (channel_shared)
    or one per channel."""
    if not torch.jit.is_scripting():
        if caffe_grad(x, scale):
            return CaffeNormalize.apply(x, scale, across_spatial, eps)
    y, _ = _normalize(_as4d(x), scale, across_spatial, eps)
    return y.reshape(x.shape)


# -------------------------------------------------------------------------- PriorBox

@torch.fx.wrap
def prior_box(feature: Tensor, image: Optional[Tensor], widths: List[float],
              heights: List[float], img_h: int, img_w: int, step_h: float, step_w: float,
              offset: float, clip: bool, variance: List[float]) -> Tensor:
    """PriorBox (prior_box_layer.cpp): (1, 2, H * W * P * 4), channel 0 the boxes
    [xmin, ymin, xmax, ymax] / image size for each location (row-major) and each of its P
    priors (`widths`/`heights`, in the layer's order), channel 1 the variances.

    The centre (w + offset) * step is float arithmetic as in the fork; the corners are
    computed in double and stored in float.  img_h/img_w 0: the image (bottom 1) gives
    them; step 0: image size / feature size, in float.  No gradient (Backward_cpu is
    empty)."""
    layer_h, layer_w = feature.shape[2], feature.shape[3]
    if img_h == 0 or img_w == 0:
        assert image is not None
        img_h, img_w = image.shape[2], image.shape[3]
    dev = feature.device
    f32, f64 = torch.float32, torch.float64
    if step_h == 0.0 or step_w == 0.0:
        sh = torch.full([1], float(img_h), dtype=f32, device=dev) / float(layer_h)
        sw = torch.full([1], float(img_w), dtype=f32, device=dev) / float(layer_w)
    else:
        sh = torch.full([1], step_h, dtype=f32, device=dev)
        sw = torch.full([1], step_w, dtype=f32, device=dev)
    cy = ((torch.arange(layer_h, dtype=f32, device=dev) + offset) * sh).to(f64)
    cx = ((torch.arange(layer_w, dtype=f32, device=dev) + offset) * sw).to(f64)
    half_w = torch.tensor(widths, dtype=f32, device=dev).to(f64) / 2.0
    half_h = torch.tensor(heights, dtype=f32, device=dev).to(f64) / 2.0
    n_priors = len(widths)
    cx = cx.reshape([1, layer_w, 1]).expand(layer_h, layer_w, n_priors)
    cy = cy.reshape([layer_h, 1, 1]).expand(layer_h, layer_w, n_priors)
    boxes = torch.stack([(cx - half_w) / float(img_w), (cy - half_h) / float(img_h),
                         (cx + half_w) / float(img_w), (cy + half_h) / float(img_h)], -1)
    boxes = boxes.to(f32).reshape([-1])
    if clip:
        boxes = boxes.clamp(0.0, 1.0)
    var = torch.tensor(variance, dtype=f32, device=dev)
    if len(variance) == 1:
        var = var.expand(boxes.shape[0])
    else:
        var = var.repeat(layer_h * layer_w * n_priors)
    return torch.stack([boxes, var], 0).unsqueeze(0)


@torch.fx.wrap
def prior_box_sized(feature: Tensor, widths: List[float], heights: List[float], img_h: int,
                    img_w: int, step_h: float, step_w: float, offset: float, clip: bool,
                    variance: List[float]) -> Tensor:
    """prior_box for a PriorBox of one bottom, whose img_size (or img_h/img_w) is given."""
    return prior_box(feature, None, widths, heights, img_h, img_w, step_h, step_w, offset,
                     clip, variance)
