"""Embed (embed_param): a lookup table, y[..., :] = W[int(x[...]), :] + b.

Mirrors src/caffe/layers/embed_layer.cpp.  The weight is (input_dim, num_output), the
transpose of InnerProduct's; input values are truncated to int as Caffe's static_cast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import CaffeModule, LayerView, register


class Embed(CaffeModule):
    caffe_blobs = ("weight", "bias")

    def __init__(self, input_dim: int, num_output: int, bias: bool, fillers) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(input_dim, num_output))
        if bias:
            self.bias = nn.Parameter(torch.empty(num_output))
        else:
            self.caffe_blobs = ("weight",)
            self.register_parameter("bias", None)
        self.fillers = list(fillers[: len(self.caffe_blobs)])

    def forward(self, x: Tensor) -> Tensor:
        y = F.embedding(x.to(torch.long), self.weight)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"weight={list(self.weight.shape)}, bias={self.bias is not None}"


@register("Embed", params=("embed_param",), bottoms=1, tops=1)
def embed(view: LayerView) -> Embed:
    p = view.param.embed_param
    if p.num_output <= 0:
        raise view.fail("embed_param.num_output", p.num_output, "a positive count")
    if p.input_dim <= 0:
        raise view.fail("embed_param.input_dim", p.input_dim, "a positive count")
    return Embed(p.input_dim, p.num_output, p.bias_term, [p.weight_filler, p.bias_filler])
