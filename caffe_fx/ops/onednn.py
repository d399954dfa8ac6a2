"""Inference kernels for the CPU: oneDNN convolution with its weight reordered once.

torch's eager `conv2d` hands oneDNN a plain (K, C, kh, kw) weight, which oneDNN reorders
into its blocked layout on every call (plus a channels-last copy first): on ResNet-50 at
batch 1 that is more than half the forward.  Inference engines (OpenCV dnn, onnxruntime,
inductor's freezing) reorder once.  Here, when autograd records nothing (`torch.no_grad`,
`inference_mode`, or no input or parameter needing grad) on a float32 CPU tensor in eager
mode, the convolution runs `mkldnn::_convolution_pointwise` on a reordered weight kept
beside the parameter, and redone when the parameter changes: another tensor, or its
version counter moved (in-place ops, `load_state_dict`, optimizers, `.to()`).  Writes that
bypass the counter - `param.data[...] = ...`, NumPy views of a parameter - are not seen:
after those, call `caffe_fx.ops.onednn.forget(module)`, or switch the kernels off with
`use_prepacked(module, False)` (the pycaffe facade, whose Blob.data are NumPy views, does).

The same reorder takes a weight folded with the BatchNorm and Scale that follow the
convolution (lowering/fuse.py): w' = w s / sqrt(var + eps), b' = (b - mean) s / sqrt(var +
eps) + beta, computed in float64 and rounded once, and the ReLU after it runs inside the
convolution.  Under autograd, TorchScript, torch.compile/export or jit tracing the ops take
their plain path, Caffe's op-for-op arithmetic.

InnerProduct's matrix products go to oneDNN's inner product (`mkldnn::_linear_pointwise`)
on the weight as stored, with no reorder and no copy, so there is nothing to cache: MKL's
sgemm, torch's default for float32 matmul, takes no AVX-512 path on AMD CPUs and runs these
shapes 1.3-2.7x slower (benchmarks/README.md).  With autograd recording, `_InnerProduct`
computes the backward's two products the same way; it is the derivative of the forward,
Caffe's own (inner_product_layer.cpp), so only the summation order changes.
"""
from __future__ import annotations

import weakref
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from . import winograd
from .caffe_grad import transformed


class _ByIdentity:
    """A mapping keyed by tensor identity whose entries go with their tensor (a weakref
    callback).  Unlike WeakIdKeyDictionary, a lookup makes no weak reference (~1 us of
    each convolution's call)."""

    def __init__(self) -> None:
        self._items: dict = {}

    def get(self, t: Tensor, default: Any = None) -> Any:
        hit = self._items.get(id(t))
        return default if hit is None or hit[0]() is not t else hit[1]

    def __contains__(self, t: Tensor) -> bool:
        hit = self._items.get(id(t))
        return hit is not None and hit[0]() is t

    def __setitem__(self, t: Tensor, value: Any) -> None:
        key, items = id(t), self._items

        def gone(ref: weakref.ref) -> None:
            hit = items.get(key)
            if hit is not None and hit[0] is ref:
                del items[key]

        items[key] = (weakref.ref(t, gone), value)

    def pop(self, t: Tensor, default: Any = None) -> Any:
        if t not in self:
            return default
        return self._items.pop(id(t))[1]


# The weight (the conv's parameter) -> (key, reordered weight, bias, sources) of its latest use.
_CACHE = _ByIdentity()
_OFF = _ByIdentity()  # weights whose kernels use_prepacked() stopped
_AVAILABLE = torch.backends.mkldnn.is_available()


def _eager() -> bool:
    """oneDNN is there and no tracer, compiler or torch.func transform (whose wrapped
    tensors the raw ops and _InnerProduct cannot take) is looking."""
    return (_AVAILABLE and not torch.jit.is_tracing() and not torch.compiler.is_compiling()
            and not transformed())


def applies(x: Tensor, params: Sequence[Optional[Tensor]]) -> bool:
    """Whether the prepacked kernel may run: eager, CPU, float32, 4-D, nothing recorded,
    and not switched off for the weight (params[0]).  (On every convolution of every
    forward: plain loops, ~3 us less than generators per call.)"""
    if not _eager() or params[0] in _OFF:
        return False
    if not x.is_cpu or x.dtype != torch.float32 or x.dim() != 4:
        return False
    grad = torch.is_grad_enabled()
    if grad and x.requires_grad:
        return False
    for p in params:
        # Parameters made under inference_mode keep no version counter to key the cache on.
        if p is not None and (p.is_inference() or (grad and p.requires_grad)):
            return False
    return True


def _key(x: Tensor, sources: Sequence[Any], stride: List[int], pad: List[int],
         dilation: List[int], groups: int) -> List[Any]:
    """What a reordered weight depends on: the bottom's shape, the geometry, and each
    source tensor's identity (storage address and version counter; None and numbers as
    they are)."""
    key: List[Any] = [x.shape, stride, pad, dilation, groups]
    for t in sources:
        if isinstance(t, Tensor):
            key.append(t.data_ptr())
            key.append(t._version)
        else:
            key.append(t)
    return key


def _cached(weight: Tensor, key: List[Any]) -> Optional[Tuple[Tensor, Optional[Tensor]]]:
    """The (weight, bias) made for `weight` under `key`, if the latest one was."""
    entry = _CACHE.get(weight)
    return (entry[1], entry[2]) if entry is not None and entry[0] == key else None


def _remember(weight: Tensor, key: List[Any], sources: Sequence[Any], w: Tensor,
              b: Optional[Tensor]) -> Tuple[Tensor, Optional[Tensor]]:
    # The entry holds the tensors it was made from (views: no copies), so that their
    # storage is not freed and reused at the same address by a tensor that replaces them
    # (`param.data = new` twice) while the key still names that address.
    _CACHE[weight] = (key, w, b, [t.detach() for t in sources if isinstance(t, Tensor)])
    return w, b


def conv2d_nhwc(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int],
                pad: List[int], dilation: List[int], groups: int) -> Tensor:
    """The plain path: torch's conv2d, on the CPU in NHWC (oneDNN convolves it 15-35%
    faster; later layers keep the layout and compile() hands outputs back contiguous).
    Not under torch.func's vmap, which cannot query memory formats."""
    nhwc = x.device.type == "cpu"
    if not torch.jit.is_scripting():
        nhwc = nhwc and not transformed()
    if nhwc:
        if x.shape[1] == 1:
            # One channel: NCHW is already NHWC, so .contiguous() keeps the NCHW strides
            # and oneDNN would answer (and the pools run) NCHW; a view with NHWC strides
            # instead (LeNet b64's step 21.3 -> 18.7 ms).
            x = x.reshape(x.shape[0], x.shape[2], x.shape[3], 1).permute(0, 3, 1, 2)
        else:
            x = x.contiguous(memory_format=torch.channels_last)
    return torch.nn.functional.conv2d(x, weight, bias, stride, pad, dilation, groups)


def conv2d(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int],
           pad: List[int], dilation: List[int], groups: int, relu: bool = False,
           fold: Optional[Tuple[Any, ...]] = None, add: Optional[Tensor] = None,
           add_in_place: bool = False) -> Tensor:
    """conv2d (then + `add`, then ReLU) with a reordered weight.  `fold`: (mean,
    variance, scale_factor, gamma, beta, eps) of a BatchNorm and Scale to fold into it
    first (see fold_batch_norm; tensors may be None).  `add`: a tensor of the output's
    shape (see adds()), summed inside the convolution by oneDNN's binary post-op, on the
    float32 result as a separate add would (bit for bit); with `add_in_place`, into
    `add`'s own memory when it is channels-last (the caller knows nothing reads it
    again).  The output is channels-last, as the plain path's."""
    if x.shape[1] != 1:
        x = x.contiguous(memory_format=torch.channels_last)
    sources = (weight, bias) if fold is None else (weight, bias) + tuple(fold)
    key = _key(x, sources, stride, pad, dilation, groups)
    wino = winograd.applies(x, weight, stride, pad, dilation, groups)
    key.append(wino)
    hit = _cached(weight, key)
    if hit is None:
        w, b = (weight, bias) if fold is None else fold_batch_norm(weight, bias, *fold)
        if wino:
            w = winograd.pack(w)
        else:
            w = torch.ops.mkldnn._reorder_convolution_weight(
                w.detach(), pad, stride, dilation, groups, list(x.shape))
        hit = _remember(weight, key, sources, w, None if b is None else b.detach().contiguous())
    w, b = hit
    if wino:
        return winograd.conv2d(x, w, b, pad, relu, add)
    if add is not None:
        unary = "relu" if relu else None
        if add_in_place and add.is_contiguous(memory_format=torch.channels_last):
            # No new tensor: saves its allocation and the writes' cache misses (ResNet-50
            # b8's forward 5% faster than the out-of-place sum).
            return torch.ops.mkldnn._convolution_pointwise_.binary(
                add, x, w, b, pad, stride, dilation, groups, "add", None, unary, [], None)
        return torch.ops.mkldnn._convolution_pointwise.binary(
            x, add.contiguous(memory_format=torch.channels_last), w, b, pad, stride,
            dilation, groups, "add", None, unary, [], None)
    return torch.ops.mkldnn._convolution_pointwise(
        x, w, b, pad, stride, dilation, groups, "relu" if relu else "none", [], "")


def adds(add: Tensor, x: Tensor, weight: Tensor, stride: List[int], pad: List[int],
         dilation: List[int]) -> bool:
    """Whether conv2d() may sum `add` into its output: a float32 CPU tensor of exactly
    the output's shape (no broadcasting, as Caffe's Eltwise), not recorded by autograd."""
    if not add.is_cpu or add.dtype != torch.float32 or add.dim() != 4:
        return False
    if torch.is_grad_enabled() and add.requires_grad:
        return False
    shape = [x.shape[0], weight.shape[0]]
    for i in range(2):
        span = dilation[i] * (weight.shape[2 + i] - 1) + 1
        shape.append((x.shape[2 + i] + 2 * pad[i] - span) // stride[i] + 1)
    return list(add.shape) == shape


def fold_batch_norm(weight: Tensor, bias: Optional[Tensor], mean: Optional[Tensor],
                    variance: Optional[Tensor], scale_factor: Optional[Tensor],
                    gamma: Optional[Tensor], beta: Optional[Tensor],
                    eps: float) -> Tuple[Tensor, Tensor]:
    """The convolution's weight and bias with the BatchNorm (global statistics: the sums
    over scale_factor, 0 when it is 0) and then the Scale (gamma, beta) folded in."""
    w = weight.detach().double()
    k = w.shape[0]
    b = bias.detach().double() if bias is not None else torch.zeros(k, dtype=torch.float64)
    if mean is not None and variance is not None and scale_factor is not None:
        s = float(scale_factor.detach().reshape(-1)[0])
        f = 0.0 if s == 0 else 1.0 / s
        inv = 1.0 / torch.sqrt(variance.detach().double() * f + eps)
        b = (b - mean.detach().double() * f) * inv
        w = w * inv.reshape(-1, 1, 1, 1)
    if gamma is not None:
        g = gamma.detach().double().reshape(-1).expand(k)
        w = w * g.reshape(-1, 1, 1, 1)
        b = b * g
    if beta is not None:
        b = b + beta.detach().double().reshape(-1).expand(k)
    return w.to(weight.dtype).contiguous(), b.to(weight.dtype)


def linear_applies(x: Tensor, weight: Tensor) -> bool:
    """Whether InnerProduct's products may go to oneDNN: eager, CPU, float32, a 2-D
    bottom with rows, no autocast (whose casts the op would skip)."""
    if not _eager():
        return False
    return (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2
            and x.shape[0] > 0 and weight.dtype == torch.float32
            and weight.device.type == "cpu" and not torch.is_autocast_enabled("cpu"))


def _product(a: Tensor, b_t: Tensor) -> Tensor:
    """a @ b_t.T (b_t: (out, in), any strides) by oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(a.contiguous(), b_t, None, "none", [], "")


def inner_product(x: Tensor, weight: Tensor, bias: Optional[Tensor], transpose: bool) -> Tensor:
    """x W^T + b for a 2-D x; `weight` as Caffe stores it: (N, K), or (K, N) with
    `transpose`.  Call where linear_applies(x, weight)."""
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or (
            bias is not None and bias.requires_grad)):
        return _InnerProduct.apply(x, weight, bias, transpose)
    return _top(x, weight, bias, transpose)


def _top(x: Tensor, weight: Tensor, bias: Optional[Tensor], transpose: bool) -> Tensor:
    w = weight.t() if transpose else weight
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), w, bias, "none", [], "")


class _InnerProduct(torch.autograd.Function):
    """inner_product() under autograd: Backward_cpu's bottom_diff = top_diff W and
    weight_diff = top_diff^T x (x^T top_diff with `transpose`), bias_diff = the column
    sums, by oneDNN; a backward that itself records (create_graph) uses torch's ops on
    the saved inputs, so higher derivatives exist."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Optional[Tensor],
                transpose: bool) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.transpose = transpose
        ctx.has_bias = bias is not None
        return _top(x, weight, bias, transpose)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        w = weight.t() if ctx.transpose else weight  # (N, K) view
        gx = gw = gb = None
        if torch.is_grad_enabled():
            if need_x:
                gx = grad @ w
            if need_w:
                gw = x.t() @ grad if ctx.transpose else grad.t() @ x
        else:
            grad = grad.contiguous()
            if need_x:
                gx = _product(grad, w.t())
            if need_w:
                gw = _product(x.t(), grad.t()) if ctx.transpose else _product(grad.t(), x.t())
        if need_b and ctx.has_bias:
            gb = grad.sum(0)
        return gx, gw, gb, None


def use_prepacked(module: nn.Module, enabled: bool) -> None:
    """Switches the prepacked kernels of `module`'s convolutions (plain and fused) on or
    off: they follow the weight parameter, wherever it is used."""
    forget(module)
    for p in module.parameters():
        if enabled:
            _OFF.pop(p, None)
        else:
            _OFF[p] = True


def forget(module: nn.Module) -> None:
    """Drops the reordered weights of `module`'s parameters (after writes that bypass
    their version counters); the next inference forward reorders again."""
    for p in module.parameters():
        _CACHE.pop(p, None)
