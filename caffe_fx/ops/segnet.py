"""Caffe-exact functionals for SegNet's layers (alexgkendall/caffe-segnet) and the
YOLO-style nearest Upsample (ChenYingpeng/darknet2caffe's caffe_layers/upsample_layer).

Each mirrors one source file of its fork, named in its docstring: bn_layer.cpp and
upsample_layer.cpp of caffe-segnet; upsample_layer.cpp of darknet2caffe.  Sizes are re-read
from the inputs on every call (the SegNet fork fixes BN's N, C, H, W and Upsample's top
size at set-up, so a reshaped net there computes on stale sizes: caffe_fx follows the
current shapes instead).
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import InputError
from ._shape_check import dims, legacy_shape, wrong_shape
from .constants import BN_EPS  # noqa: F401 - var_eps_, read as ops.BN_EPS by the lowering
from .caffe_grad import caffe_grad, keep_top



# ------------------------------------------------------------------------------- BN

def _legacy4d(x: Tensor) -> Tensor:
    """BN reads num/channels/height/width (legacy accessors: missing axes are 1) and
    reshapes its top to those four, so a 2-D bottom gives an (N, C, 1, 1) top."""
    shape = legacy_shape([int(d) for d in x.shape])
    return x.reshape(shape)


def _bn_stats(x4: Tensor) -> Tuple[Tensor, Tensor]:
    """Forward_cpu's batch statistics: E[x] and E[x^2] over (H, W) per item, then over N;
    var = E[x^2] - E[x]^2 (before eps, as the variance top shows it).  (1, C, 1, 1)."""
    mean = x4.mean([2, 3], keepdim=True).mean(0, keepdim=True)
    ex2 = (x4 * x4).mean([2, 3], keepdim=True).mean(0, keepdim=True)
    return mean, ex2 - mean * mean


def _bn_learn(x4: Tensor, scale: Tensor, shift: Tensor
              ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(top, mean, var, sqrt(var + eps), x_norm), in Forward_cpu's order of operations."""
    mean, var = _bn_stats(x4)
    std = torch.sqrt(var + 1e-9)  # BN_EPS (ops/constants.py); TorchScript reads no globals
    x_norm = (x4 - mean) / std
    return x_norm * scale + shift, mean, var, std, x_norm


class CaffeBNLearn(torch.autograd.Function):
    """BN in LEARN mode with bn_layer.cpp's Backward_cpu: scale's diff sum(x_norm td) and
    shift's sum(td) over (N, H, W); the bottom's (g - mean(g) - x_norm mean(x_norm g)) /
    sqrt(var + eps) with g = scale td.  The mean and variance tops get no diff (Caffe's
    backward never reads them).  Reads only its own saved x_norm, so a later in-place
    layer may overwrite the top."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor, shift: Tensor, top_is_bottom: bool
                ) -> Tuple[Tensor, Tensor, Tensor]:
        y, mean, var, std, x_norm = _bn_learn(_legacy4d(x), scale, shift)
        ctx.save_for_backward(x_norm, std, scale)
        ctx.in_shape = x.shape
        ctx.mark_non_differentiable(mean, var)
        keep_top(ctx, x, y, top_is_bottom)
        return y, mean, var

    @staticmethod
    @once_differentiable  # Caffe has no second derivative
    def backward(ctx: Any, dy: Tensor, _dmean: Optional[Tensor], _dvar: Optional[Tensor]
                 ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor], None]:
        x_norm, std, scale = ctx.saved_tensors
        dx = dscale = dshift = None
        if ctx.needs_input_grad[1]:
            dscale = (x_norm * dy).sum([0, 2, 3], keepdim=True)
        if ctx.needs_input_grad[2]:
            dshift = dy.sum([0, 2, 3], keepdim=True)
        if ctx.needs_input_grad[0]:
            g = dy * scale
            m = float(g.shape[0] * g.shape[2] * g.shape[3])
            a = (x_norm * g).sum([0, 2, 3], keepdim=True)
            b = g.sum([0, 2, 3], keepdim=True)
            dx = ((g - (x_norm * a + b) * (1.0 / m)) / std).reshape(ctx.in_shape)
        return dx, dscale, dshift, None


def bn_learn(x: Tensor, scale: Tensor, shift: Tensor, top_is_bottom: bool = False
             ) -> Tuple[Tensor, Tensor, Tensor]:
    """BN (bn_layer.cpp) in LEARN mode, in TRAIN and TEST alike: the batch's own mean and
    variance over (N, H, W), eps 1e-9.  Returns the (N, C, H, W) top and the batch mean and
    variance, (1, C, 1, 1)."""
    if not torch.jit.is_scripting():
        if caffe_grad(x, scale, shift):
            y, mean, var = CaffeBNLearn.apply(x, scale, shift, top_is_bottom)
            return y, mean, var
    y, mean, var, _, _ = _bn_learn(_legacy4d(x), scale, shift)
    return y, mean, var


class CaffeBNInference(torch.autograd.Function):
    """BN INFERENCE computed in place (its top is its bottom): Backward_cpu's scale diff
    sums bottom data * td, and that blob then holds the top (after any later in-place
    layer), not the input; shift's is sum(td), the bottom's scale * td.  (compile() lets
    the next ReLU overwrite this top whenever it is the top's only reader, which is what
    Caffe does when that ReLU is in place too, as in SegNet's nets; a ReLU with its own
    top would leave the fork's blob unrectified.)"""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        x4 = _legacy4d(x)
        y = x4 * scale + shift
        # The top is not saved (a later ReLU may overwrite it in place): the blob record
        # of keep_top sees it as Caffe's backward does, else it is recomputed.
        ctx.save_for_backward(x4, scale, shift)
        ctx.in_shape = x.shape
        keep_top(ctx, x, y, True)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor
                 ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor]]:
        x4, scale, shift = ctx.saved_tensors
        record = getattr(ctx, "caffe_blob", None)
        blob = record.value if record is not None else x4 * scale + shift
        dx = dscale = dshift = None
        if ctx.needs_input_grad[0]:
            dx = (dy * scale).reshape(ctx.in_shape)
        if ctx.needs_input_grad[1]:
            dscale = (blob * dy).sum([0, 2, 3], keepdim=True)
        if ctx.needs_input_grad[2]:
            dshift = dy.sum([0, 2, 3], keepdim=True)
        return dx, dscale, dshift


def bn_inference(x: Tensor, scale: Tensor, shift: Tensor, top_is_bottom: bool = False
                 ) -> Tensor:
    """BN (bn_layer.cpp) in INFERENCE mode: scale * x + shift per channel, whose autograd
    derivative is the fork's backward unless the layer runs in place (CaffeBNInference)."""
    if not torch.jit.is_scripting():
        if top_is_bottom and caffe_grad(x, scale, shift):
            return CaffeBNInference.apply(x, scale, shift)
    return _legacy4d(x) * scale + shift


# ------------------------------------------------------------- Upsample (SegNet)

def _check_mask(idx: Tensor, plane: int, layer: str) -> None:
    """Forward_cpu's LOG(FATAL) on a mask index past the top plane (and a negative one,
    which the fork would write before its plane), in eager mode only: a traced, exported
    or scripted program cannot branch on data."""
    if torch.jit.is_scripting() or torch.compiler.is_compiling() or idx.numel() == 0 \
            or idx.is_meta:  # compile()'s shape inference
        return
    lo, hi = torch.aminmax(idx)
    if int(lo) < 0 or int(hi) >= plane:
        raise InputError(
            f"layer '{layer}' (Upsample): mask index {int(hi) if int(hi) >= plane else int(lo)}"
            f" is outside the top plane of {plane} pixels; allowed: 0 to {plane - 1} (Caffe: "
            "upsample top index out of range - check scale settings match input pooling "
            "layer's downsample setup)")


def _unpool(x: Tensor, idx: Tensor, plane: int) -> Tensor:
    """Scatters each (n, c) plane of x into zeros at idx.  Where two bottom pixels name the
    same top pixel (overlapping pooling windows) the later one wins, as in the fork's loop:
    scatter_reduce(amax) of the positions finds it, deterministically."""
    rows, count = x.shape[0] * x.shape[1], x.shape[2] * x.shape[3]
    src = x.reshape([rows, count])
    where = idx.reshape([rows, count])
    pos = torch.arange(count, device=x.device).expand(rows, count)
    winner = torch.full([rows, plane], -1, dtype=torch.long, device=x.device)
    winner = winner.scatter_reduce(1, where, pos, "amax")
    got = src.gather(1, winner.clamp(min=0))
    return torch.where(winner >= 0, got, torch.zeros_like(got))


class CaffeUnpool(torch.autograd.Function):
    """Upsample with upsample_layer.cpp's Backward_cpu: each bottom pixel takes the top
    diff at its mask index (a gather; with duplicate indices every one of them does, which
    is not the derivative of the forward's last-wins scatter).  The mask gets no diff."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, idx: Tensor, out_h: int, out_w: int) -> Tensor:
        ctx.save_for_backward(idx)
        return _unpool(x, idx, out_h * out_w).reshape(
            [x.shape[0], x.shape[1], out_h, out_w])

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> Tuple[Optional[Tensor], None, None, None]:
        (idx,) = ctx.saved_tensors
        n, c, h, w = idx.shape
        dx = dy.reshape([n * c, -1]).gather(1, idx.reshape([n * c, h * w]))
        return dx.reshape([n, c, h, w]), None, None, None


@torch.fx.wrap
def upsample_unpool(x: Tensor, mask: Tensor, scale_h: int, scale_w: int, pad_out_h: bool,
                    pad_out_w: bool, upsample_h: int, upsample_w: int, layer: str = ""
                    ) -> Tensor:
    """SegNet's Upsample (upsample_layer.cpp): bottom 0 scattered into zeros at the MAX
    Pooling mask's float indices h * W + w of each (n, c) plane.  The top is upsample_h x
    upsample_w when those are given (> 0), else H * scale_h - pad_out_h by W * scale_w -
    pad_out_w."""
    if x.dim() != 4 or mask.dim() != 4:
        wrong_shape(layer, "Upsample", "bottoms of shapes " + dims(x) + " and " + dims(mask)
                    + " are not both 4-D (N, C, H, W)", "4 == bottom[0]->num_axes()")
    if x.shape != mask.shape:
        wrong_shape(layer, "Upsample", "the mask's shape " + dims(mask) + " is not the "
                    "data's " + dims(x), "bottom[0]->height() == bottom[1]->height()")
    if upsample_h > 0 and upsample_w > 0:
        out_h, out_w = upsample_h, upsample_w
    else:
        out_h = int(x.shape[2]) * scale_h - int(pad_out_h)
        out_w = int(x.shape[3]) * scale_w - int(pad_out_w)
    idx = mask.detach().to(torch.long)  # static_cast<int>: truncation toward zero
    if not torch.jit.is_scripting():
        _check_mask(idx, out_h * out_w, layer)
        if caffe_grad(x):
            return CaffeUnpool.apply(x, idx, out_h, out_w)
    return _unpool(x, idx, out_h * out_w).reshape([x.shape[0], x.shape[1], out_h, out_w])


# ------------------------------------------------------ Upsample (YOLO, nearest)

@torch.fx.wrap
def upsample_nearest(x: Tensor, scale: int, layer: str = "") -> Tensor:
    """The YOLO-style Upsample of ChenYingpeng/darknet2caffe (caffe_layers/upsample_layer,
    the darknet-to-caffe converters' layer): every pixel repeated scale x scale times.
    Its Backward_cpu sums each block's diffs, which is the derivative autograd gives."""
    if x.dim() != 4:
        wrong_shape(layer, "Upsample", "bottom of shape " + dims(x) + " is not 4-D "
                    "(N, C, H, W)", "top[0]->shape(3)")
    n, c, h, w = int(x.shape[0]), int(x.shape[1]), int(x.shape[2]), int(x.shape[3])
    y = x.reshape([n, c, h, 1, w, 1]).expand([n, c, h, scale, w, scale])
    return y.reshape([n, c, h * scale, w * scale])
