"""InnerProduct (inner_product_param): y = x W^T + b over the axes from `axis` on.

Mirrors src/caffe/layers/inner_product_layer.cpp.  The weight is stored as Caffe
stores it: (num_output, K), or (K, num_output) with `transpose: true`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import ShapeError
from ...ops import onednn
from ..registry import CaffeModule, LayerView, register
from ..._limits import check_shape


class InnerProduct(CaffeModule):
    caffe_blobs = ("weight", "bias")
    __jit_ignored_attributes__ = [*CaffeModule.__jit_ignored_attributes__, "declared"]

    def __init__(self, k: int, num_output: int, bias: bool, axis: int, transpose: bool,
                 fillers) -> None:
        super().__init__()
        shape = (k, num_output) if transpose else (num_output, k)
        self.weight = nn.Parameter(torch.empty(shape))
        if bias:
            self.bias = nn.Parameter(torch.empty(num_output))
        else:
            self.caffe_blobs = ("weight",)
            self.register_parameter("bias", None)
        self.fillers = list(fillers[: len(self.caffe_blobs)])
        self.axis = axis
        self.transpose = transpose
        self.k = k
        self.caffe_layer = ""  # set by inner_product(), for the error of a wrong shape
        self.declared = ()  # the bottom shape the net was set up with

    def forward(self, x: Tensor) -> Tensor:
        count = 1
        for d in x.shape[self.axis:]:
            count *= d
        if x.dim() <= self.axis or count != self.k:
            if torch.jit.is_scripting():
                raise RuntimeError(
                    "layer '" + self.caffe_layer + "' (InnerProduct): the bottom gives "
                    + str(count) + " values per item from axis " + str(self.axis)
                    + " on; the weight takes K = " + str(self.k))
            self._wrong_shape(x)
        x = torch.flatten(x, self.axis)
        if not torch.jit.is_scripting():
            if onednn.linear_applies(x, self.weight):
                return onednn.inner_product(x, self.weight, self.bias, self.transpose)
        weight = self.weight.t() if self.transpose else self.weight
        if x.dim() != 2:
            return F.linear(x, weight, self.bias)
        # y^T = W x^T: the same product, but MKL's sgemm runs it ~2x faster than x W^T
        # for a few rows (batch 8 on AMD EPYC; benchmarks/README.md).  Eager float32 on
        # the CPU goes to oneDNN above instead.
        if self.bias is None:
            return torch.mm(weight, x.t()).t().contiguous()
        return torch.addmm(self.bias.unsqueeze(1), weight, x.t()).t().contiguous()

    @torch.jit.unused
    def _wrong_shape(self, x):  # noqa: ANN001  (TorchScript reads annotations here)
        # InnerProductLayer::Reshape: CHECK_EQ(K_, new_K) "Input size incompatible with
        # inner product parameters."  Named here, not as torch's "mat1 and mat2" error.
        raise ShapeError(
            f"layer '{self.caffe_layer}' (InnerProduct): bottom of shape {list(x.shape)} "
            f"gives {math.prod(x.shape[self.axis:])} values per item "
            f"from axis {self.axis} on; the weight takes K = {self.k} (the net was set up "
            f"with bottom shape {list(self.declared)}); Caffe: \"Input size incompatible "
            "with inner product parameters\"")

    def extra_repr(self) -> str:
        return f"weight={list(self.weight.shape)}, axis={self.axis}, transpose={self.transpose}"


@register("InnerProduct", params=("inner_product_param",), bottoms=1, tops=1)
def inner_product(view: LayerView) -> InnerProduct:
    p = view.param.inner_product_param
    shape = view.input_shapes[0]
    axis = p.axis + len(shape) if p.axis < 0 else p.axis
    if not 0 <= axis < len(shape):
        raise view.error(f"inner_product_param.axis = {p.axis} is out of range for a "
                         f"{len(shape)}-D bottom", ShapeError)
    if p.num_output <= 0:
        raise view.fail("inner_product_param.num_output", p.num_output, "a positive count")
    k = math.prod(shape[axis:])
    check_shape((k, p.num_output), f"layer '{view.name}' ({view.type}): the weight blob")
    module = InnerProduct(k, p.num_output, p.bias_term, axis, p.transpose,
                          [p.weight_filler, p.bias_filler])
    module.caffe_layer, module.declared = view.name, tuple(shape)
    return module
