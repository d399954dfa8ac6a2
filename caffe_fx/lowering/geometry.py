"""Kernel, stride, pad and dilation as Caffe spells them, in one tested place.

Lowering stage helper shared by Convolution, Deconvolution, Im2col and Pooling.  Mirrors
the parsing in src/caffe/layers/base_conv_layer.cpp (repeated fields, one value for
every spatial axis, or the 2-D `_h`/`_w` forms) and pooling_layer.cpp (scalar fields).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedFieldError
from ..proto import caffe_pb2


@dataclass(frozen=True)
class Geometry:
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]


def _repeated(where: str, p, name: str, n: int, default: int | None) -> tuple[int, ...]:
    values = list(getattr(p, name))
    if not values:
        if default is None:
            raise UnsupportedFieldError(f"{where}: {name} is required")
        return (default,) * n
    if len(values) == 1:
        return (values[0],) * n
    if len(values) != n:
        raise UnsupportedFieldError(
            f"{where}: {name} has {len(values)} values; allowed: 1 or one per spatial "
            f"axis ({n})")
    return tuple(values)


def _hw(where: str, p, name: str, n: int) -> tuple[int, int] | None:
    has_h, has_w = p.HasField(f"{name}_h"), p.HasField(f"{name}_w")
    if not (has_h or has_w):
        return None
    if not (has_h and has_w):
        raise UnsupportedFieldError(f"{where}: {name}_h and {name}_w must be given together")
    if n != 2:
        raise UnsupportedFieldError(f"{where}: {name}_h/{name}_w are for 2-D only; this has {n} spatial axes")
    return getattr(p, f"{name}_h"), getattr(p, f"{name}_w")


def conv_geometry(where: str, p: caffe_pb2.ConvolutionParameter, n: int) -> Geometry:
    """`n` = number of spatial axes (input axes after the channel axis)."""
    out = {}
    for name, default in (("kernel", None), ("stride", 1), ("pad", 0)):
        hw = _hw(where, p, name, n)
        rep = name + "_size" if name == "kernel" else name
        if hw is not None:
            if len(getattr(p, rep)):
                raise UnsupportedFieldError(
                    f"{where}: either {rep} or {name}_h/{name}_w may be given, not both")
            out[name] = hw
        else:
            out[name] = _repeated(where, p, rep, n, default)
    dilation = _repeated(where, p, "dilation", n, 1)
    geometry = Geometry(out["kernel"], out["stride"], out["pad"], dilation)
    _check_positive(where, "convolution_param", geometry)
    return geometry


def _check_positive(where: str, message: str, g: Geometry) -> None:
    # base_conv_layer.cpp: "Filter dimensions must be nonzero."; a zero stride or
    # dilation would divide by zero in Caffe's output-size formula; pad is unsigned there.
    for name, values, low in (("kernel", g.kernel, 1), ("stride", g.stride, 1),
                              ("dilation", g.dilation, 1), ("pad", g.pad, 0)):
        for v in values:
            if v < low:
                raise UnsupportedFieldError(
                    f"{where}: {message} {name} = {v} is not allowed; allowed: {name} >= {low}")


def pool_ceil(where: str, p: caffe_pb2.PoolingParameter) -> bool:
    """Whether the pooled size rounds up: BVLC's round_mode (CEIL by default), or the
    ceil_mode of BVLC/caffe pull request #3057 (pooling_layer.cpp there: `ceil_mode_ ?
    ceil(...) : floor(...)`, default true), which shicai/DenseNet-Caffe writes as
    `ceil_mode: false`.  Both given and disagreeing is refused."""
    if not p.HasField("ceil_mode"):
        return p.round_mode == caffe_pb2.PoolingParameter.CEIL
    if p.HasField("round_mode") and (p.round_mode == caffe_pb2.PoolingParameter.CEIL) != \
            p.ceil_mode:
        raise UnsupportedFieldError(
            f"{where}: pooling_param ceil_mode = {str(p.ceil_mode).lower()} and round_mode = "
            f"{caffe_pb2.PoolingParameter.RoundMode.Name(p.round_mode)} disagree; allowed: "
            "one of them, or ceil_mode: true with round_mode: CEIL, or ceil_mode: false "
            "with round_mode: FLOOR")
    return p.ceil_mode


def pool_geometry(where: str, p: caffe_pb2.PoolingParameter,
                  spatial: tuple[int, int]) -> Geometry:
    """Pooling's scalar-or-_h/_w fields; global pooling takes the whole plane."""
    def pick(name: str, default: int | None) -> tuple[int, int]:
        scalar = "kernel_size" if name == "kernel" else name
        has_scalar = p.HasField(scalar)
        hw = _hw(where, p, name, 2)
        if has_scalar and hw is not None:
            raise UnsupportedFieldError(
                f"{where}: either {scalar} or {name}_h/{name}_w may be given, not both")
        if hw is not None:
            return hw
        if has_scalar:
            v = getattr(p, scalar)
            return v, v
        if default is None:
            raise UnsupportedFieldError(
                f"{where}: pooling_param needs kernel_size or kernel_h/kernel_w "
                "(or global_pooling: true)")
        return default, default

    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise UnsupportedFieldError(
                f"{where}: global_pooling: true forbids kernel_size/kernel_h/kernel_w")
        kernel = spatial
        pad, stride = pick("pad", 0), pick("stride", 1)
        if pad != (0, 0) or stride != (1, 1):
            raise UnsupportedFieldError(f"{where}: global_pooling needs pad 0 and stride 1")
    else:
        kernel, pad, stride = pick("kernel", None), pick("pad", 0), pick("stride", 1)
    _check_positive(where, "pooling_param", Geometry(kernel, stride, pad, (1, 1)))
    for k, pd in zip(kernel, pad):
        if pd >= k:
            raise UnsupportedFieldError(
                f"{where}: pooling_param pad = {pd} must be smaller than kernel = {k}")
    return Geometry(kernel, stride, pad, (1, 1))
