"""Convolution and Deconvolution (convolution_param).

Mirrors src/caffe/layers/base_conv_layer.cpp, conv_layer.cpp and deconv_layer.cpp:
weights (num_output, C/group, k...) for Convolution and (C, num_output/group, k...) for
Deconvolution, as torch's Conv*d / ConvTranspose*d store them; `axis` folds the axes
before the channel axis into the batch.  Several bottoms share the one weight, bottom i
giving top i (BaseConvolutionLayer's loops over bottom.size()).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...errors import NetDefinitionError, ShapeError
from ...ops import onednn
from ..geometry import Geometry, conv_geometry
from ..registry import CaffeModule, LayerView, register
from ..._limits import check_shape


class CaffeConv(CaffeModule):
    """N-D (de)convolution over the axes after `axis`, with one weight for every bottom."""

    caffe_blobs = ("weight", "bias")
    __jit_ignored_attributes__ = [*CaffeModule.__jit_ignored_attributes__, "declared"]

    def __init__(self, weight_shape: tuple[int, ...], bias: bool, geometry: Geometry,
                 groups: int, axis: int, transposed: bool, fillers) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(weight_shape))
        if bias:
            out = weight_shape[1] * groups if transposed else weight_shape[0]
            self.bias = nn.Parameter(torch.empty(out))
        else:
            self.caffe_blobs = ("weight",)
            self.register_parameter("bias", None)
        self.fillers = list(fillers[: len(self.caffe_blobs)])
        self.stride = list(geometry.stride)
        self.padding = list(geometry.pad)
        self.dilation = list(geometry.dilation)
        self.groups = groups
        self.axis = axis
        self.transposed = transposed
        self.nhwc = not transposed and len(weight_shape) == 4  # see forward
        self.channels = weight_shape[0] if transposed else weight_shape[1] * groups
        self.ndim = axis + len(weight_shape) - 1  # the axes before, channels, spatial
        self.caffe_layer = ""  # set by conv_module, for the error of a wrong shape
        self.caffe_type = "Deconvolution" if transposed else "Convolution"  # or a fork's
        self.declared = ()  # the bottom shape the net was set up with

    def forward(self, x: Tensor, relu: bool = False) -> Tensor:
        """`relu`: the ReLU (negative_slope 0) that lowering/fuse.py found after this layer,
        inside the convolution where oneDNN runs it, else in place on its output."""
        return self._one(x, relu)

    def _one(self, x: Tensor, relu: bool = False) -> Tensor:
        if x.dim() != self.ndim or x.shape[self.axis] != self.channels:
            if torch.jit.is_scripting():
                raise RuntimeError(
                    "layer '" + self.caffe_layer + "' (convolution): the bottom has "
                    + str(x.dim()) + " axes; the weight needs " + str(self.ndim)
                    + " axes with " + str(self.channels) + " channels at axis "
                    + str(self.axis))
            self._wrong_shape(x)
        lead = x.shape[: self.axis]
        if self.axis != 1:
            x = x.reshape([-1] + list(x.shape[self.axis:]))
        n = x.dim() - 2
        if self.transposed:
            if n == 1:
                y = F.conv_transpose1d(x, self.weight, self.bias, self.stride, self.padding, 0,
                                       self.groups, self.dilation)
            elif n == 2:
                y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, 0,
                                       self.groups, self.dilation)
            else:
                y = F.conv_transpose3d(x, self.weight, self.bias, self.stride, self.padding, 0,
                                       self.groups, self.dilation)
        elif n == 1:
            y = F.conv1d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                         self.groups)
        elif n == 2:
            if not torch.jit.is_scripting():
                if self.axis == 1 and onednn.applies(x, [self.weight, self.bias]):
                    return onednn.conv2d(x, self.weight, self.bias, self.stride,
                                         self.padding, self.dilation, self.groups, relu)
            y = onednn.conv2d_nhwc(x, self.weight, self.bias, self.stride, self.padding,
                                   self.dilation, self.groups)
        else:
            y = F.conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                         self.groups)
        if self.axis != 1:
            y = y.reshape(list(lead) + list(y.shape[1:]))
        if relu:
            y = torch.relu_(y)
        return y

    @torch.jit.unused
    def _wrong_shape(self, x):  # noqa: ANN001  (TorchScript reads annotations here)
        # BaseConvolutionLayer::Reshape: "Input size incompatible with convolution kernel."
        # Named here, not as torch's "expected input ... to have 3 channels".
        kind = self.caffe_type
        raise ShapeError(
            f"layer '{self.caffe_layer}' ({kind}): bottom of shape {list(x.shape)}; the "
            f"weight takes {self.ndim}-D bottoms with {self.channels} channels at axis "
            f"{self.axis} (the net was set up with bottom shape {list(self.declared)}); "
            "Caffe: \"Input size incompatible with convolution kernel\"")

    def extra_repr(self) -> str:
        kind = "deconv" if self.transposed else "conv"
        return (f"{kind} weight={list(self.weight.shape)}, stride={self.stride}, "
                f"pad={self.padding}, dilation={self.dilation}, groups={self.groups}")


def conv_module(view: LayerView, transposed: bool) -> CaffeConv:
    p = view.param.convolution_param
    shape = view.input_shapes[0]
    # BaseConvolutionLayer::Reshape: CHECK "All inputs must have the same shape."
    for j, other in enumerate(view.input_shapes[1:], 1):
        if other != shape:
            raise view.error(f"bottom[{j}] '{view.bottoms[j]}' has shape {list(other)} but "
                             f"bottom[0] '{view.bottoms[0]}' has {list(shape)}; all bottoms "
                             f"must have the same shape (they share one weight)", ShapeError)
    axis = p.axis + len(shape) if p.axis < 0 else p.axis
    if not 0 <= axis < len(shape):
        raise view.error(f"convolution_param.axis = {p.axis} is out of range for a "
                         f"{len(shape)}-D bottom", ShapeError)
    n = len(shape) - axis - 1
    if n not in (1, 2, 3):
        raise view.fail("number of spatial axes", n, "1, 2 or 3")
    geometry = conv_geometry(f"layer '{view.name}' ({view.type})", p, n)
    channels, groups = shape[axis], p.group
    if p.num_output <= 0:
        raise view.fail("convolution_param.num_output", p.num_output, "a positive count")
    if groups <= 0:
        raise view.fail("convolution_param.group", groups, "a positive count that divides "
                        f"the input channels ({channels}) and num_output ({p.num_output})")
    if channels % groups or p.num_output % groups:
        raise view.error(f"convolution_param.group = {groups} must divide both the input "
                         f"channels ({channels}) and num_output ({p.num_output})", ShapeError)
    if transposed:
        weight_shape = (channels, p.num_output // groups) + geometry.kernel
    else:
        weight_shape = (p.num_output, channels // groups) + geometry.kernel
    check_shape(weight_shape, f"layer '{view.name}' ({view.type}): the weight blob")
    cls = CaffeSharedConv if len(view.bottoms) > 1 else CaffeConv
    module = cls(weight_shape, p.bias_term, geometry, groups, axis, transposed,
                 [p.weight_filler, p.bias_filler])
    module.caffe_layer, module.declared = view.name, tuple(shape)
    module.caffe_type = view.type  # DepthwiseConvolution's errors name its own type
    return module


class CaffeSharedConv(CaffeConv):
    """Several bottoms, one top each, all through the same weight (base_conv_layer.cpp);
    Caffe's backward sums the weight diff over them, as autograd does.  Its varargs
    forward runs eagerly, exports and compiles, but TorchScript cannot script it."""

    def forward(self, *xs: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        return tuple(self._one(x) for x in xs)


def check_pairs(view: LayerView) -> None:
    # Layer::CheckBlobCounts, EqualNumBottomTopBlobs: "<type> Layer produces one top blob
    # as output for each bottom blob input."
    if len(view.bottoms) != len(view.tops):
        raise view.error(f"has {len(view.bottoms)} bottoms and {len(view.tops)} tops; it "
                         f"gives one top for each bottom, so the counts must be equal",
                         NetDefinitionError)


# In place is refused: the top is reshaped (and im2col reads the bottom) while it is written.
@register("Convolution", params=("convolution_param",), bottoms=(1, None), tops=(1, None),
          inplace_ok=False)
def convolution(view: LayerView) -> CaffeConv:
    check_pairs(view)
    return conv_module(view, transposed=False)


@register("Deconvolution", params=("convolution_param",), bottoms=(1, None), tops=(1, None),
          inplace_ok=False)
def deconvolution(view: LayerView) -> CaffeConv:
    check_pairs(view)
    return conv_module(view, transposed=True)
