"""The mobile nets' fork layers: ReLU6 (chuanqi305/ssd), ShuffleChannel
(shuffle_channel_param, farmingyard/ShuffleNet) and DepthwiseConvolution
(convolution_param, yonghenglh6/DepthwiseConvolution), on ops/mobile.py and the
Convolution module.

ReLU6 mirrors chuanqi305/ssd's relu6_layer.cpp, a NeuronLayer with no parameter of its
own (NVIDIA/caffe's ReLU6 adds relu_param.negative_slope: refused unless 0).
ShuffleChannel mirrors shuffle_channel_layer.cpp: group > 0 dividing the channels, the
top N x C x H x W by the legacy accessors; in place only where the shuffle is the
identity (group 1 or C), as the fork's copies would read channels already overwritten.
DepthwiseConvolution mirrors depthwise_conv_layer.cpp, a BaseConvolutionLayer whose
Forward_cpu/Backward_cpu are Convolution's im2col + gemm: any group (and num_output,
dilation) gives Caffe's grouped convolution, as here.  Only its CUDA kernel assumes
group == channels == num_output and no dilation (it indexes the weight per channel), so
a net with other values computes something else on the fork's GPU.
"""
from __future__ import annotations

from ...errors import ShapeError
from ...ops import mobile as ops
from ..registry import Call, LayerView, register
from .convolution import CaffeConv, check_pairs, conv_module


@register("ReLU6", params=("relu_param",), bottoms=1, tops=1, fork="chuanqi305/ssd")
def relu6(view: LayerView) -> Call:
    slope = view.param.relu_param.negative_slope
    if slope != 0:
        raise view.fail("relu_param.negative_slope", slope,
                        "0 (chuanqi305/ssd's ReLU6 reads no parameter; NVIDIA/caffe's "
                        "leaky ReLU6 is not supported)")
    return Call(ops.relu6, {"top_is_bottom": True} if view.tops[0] == view.bottoms[0] else {})


@register("ShuffleChannel", params=("shuffle_channel_param",), bottoms=1, tops=1,
          fork="farmingyard/ShuffleNet")
def shuffle_channel(view: LayerView) -> Call:
    group = view.param.shuffle_channel_param.group
    shape = view.input_shapes[0]
    if group <= 0:
        raise view.fail("shuffle_channel_param.group", group,
                        "a positive count dividing the channels (the fork: \"group must "
                        "be greater than 0\")")
    if not 2 <= len(shape) <= 4:
        raise view.error(f"bottom of shape {list(shape)}; allowed: 2 to 4 axes (the fork "
                         "reads num, channels, height and width)", ShapeError)
    channels = shape[1]
    if channels % group:
        raise view.fail("shuffle_channel_param.group", group,
                        f"a divisor of the {channels} channels of the bottom (the fork: "
                        "\"Wrong group size.\")")
    if view.tops[0] == view.bottoms[0] and group not in (1, channels):
        raise view.error(f"cannot work in place with group {group} (the fork copies "
                         "channel by channel within the one blob, reading channels it "
                         "has overwritten); give the top another name")
    return Call(ops.shuffle_channel, dict(group=int(group), layer=view.name))


# In place is refused, as for Convolution.
@register("DepthwiseConvolution", params=("convolution_param",), bottoms=(1, None),
          tops=(1, None), inplace_ok=False, fork="yonghenglh6/DepthwiseConvolution")
def depthwise_convolution(view: LayerView) -> CaffeConv:
    check_pairs(view)
    return conv_module(view, transposed=False)
