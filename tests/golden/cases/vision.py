"""Golden cases for Convolution, Deconvolution and Pooling."""
from . import Case, input_net


def _net(layer: str, shape=(2, 3, 9, 9)) -> str:
    return input_net({"data": shape}) + layer


def conv(name: str, params: str, shape=(2, 3, 9, 9), kind="Convolution",
         save_weights=False) -> Case:
    layer = ('layer { name: "conv" type: "%s" bottom: "data" top: "conv"\n'
             '  convolution_param { %s } }\n' % (kind, params))
    return Case(f"{kind.lower()}-{name}", kind, _net(layer, shape), {"data": shape},
                save_weights=save_weights)


def conv_pairs(name: str, params: str, n: int = 2, shape=(2, 3, 7, 7),
               kind="Convolution") -> Case:
    """One (de)convolution over n bottoms of one shape, bottom i giving top i through the
    shared weight (BaseConvolutionLayer: one weight, a loop over the bottoms)."""
    inputs = {f"data{i}": shape for i in range(n)}
    bottoms = "".join(f' bottom: "data{i}"' for i in range(n))
    tops = "".join(f' top: "conv{i}"' for i in range(n))
    layer = ('layer { name: "conv" type: "%s"%s%s\n'
             '  convolution_param { %s } }\n' % (kind, bottoms, tops, params))
    return Case(f"{kind.lower()}-{name}", kind, input_net(inputs) + layer, inputs)


def pool(name: str, params: str, shape=(2, 3, 9, 9), tops=("pool",)) -> Case:
    top = "".join(f' top: "{t}"' for t in tops)
    layer = ('layer { name: "pool" type: "Pooling" bottom: "data"%s\n'
             '  pooling_param { %s } }\n' % (top, params))
    return Case(f"pooling-{name}", "Pooling", _net(layer, shape), {"data": shape})


CASES = [
    conv("basic", "num_output: 4 kernel_size: 3"),
    conv("stride_pad", "num_output: 5 kernel_size: 3 stride: 2 pad: 1"),
    conv("hw_forms", "num_output: 4 kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0"),
    conv("group", "num_output: 6 kernel_size: 3 group: 3"),
    conv("dilation", "num_output: 4 kernel_size: 3 dilation: 2 pad: 2"),
    conv("no_bias", "num_output: 4 kernel_size: 1 bias_term: false"),
    conv("nd_3d", "num_output: 2 kernel_size: 2", shape=(2, 3, 4, 5, 6)),
    conv("nd_1d", "num_output: 2 kernel_size: 3", shape=(2, 3, 8)),
    conv("repeated_pad", "num_output: 3 kernel_size: 3 kernel_size: 1 pad: 1 pad: 0"),
    conv("from_caffemodel", "num_output: 4 kernel_size: 3 group: 1", save_weights=True),
    conv("axis2", "num_output: 3 kernel_size: 3 axis: 2", shape=(2, 2, 3, 6, 6)),
    conv("basic", "num_output: 4 kernel_size: 3 stride: 2", kind="Deconvolution"),
    conv("group_pad", "num_output: 6 kernel_size: 4 stride: 2 pad: 1 group: 3", kind="Deconvolution"),
    conv("dilation", "num_output: 2 kernel_size: 3 dilation: 2 bias_term: false", kind="Deconvolution"),
    conv_pairs("two_bottoms", "num_output: 4 kernel_size: 3 pad: 1"),
    conv_pairs("two_bottoms_group_stride", "num_output: 6 kernel_size: 3 stride: 2 group: 3"),
    conv_pairs("three_bottoms_3d", "num_output: 2 kernel_size: 2", n=3, shape=(1, 2, 3, 4, 5)),
    conv_pairs("two_bottoms", "num_output: 3 kernel_size: 3 stride: 2", kind="Deconvolution"),
    conv_pairs("two_bottoms_group", "num_output: 4 kernel_size: 2 group: 2 bias_term: false",
               shape=(2, 4, 5, 5), kind="Deconvolution"),
    pool("max", "pool: MAX kernel_size: 3 stride: 2"),
    pool("max_ceil_overhang", "pool: MAX kernel_size: 3 stride: 2", shape=(1, 2, 10, 10)),
    pool("max_pad", "pool: MAX kernel_size: 3 stride: 2 pad: 1"),
    pool("max_big_pad", "pool: MAX kernel_size: 3 stride: 1 pad: 2"),
    pool("ave", "pool: AVE kernel_size: 3 stride: 2", shape=(1, 2, 10, 10)),
    pool("ave_pad", "pool: AVE kernel_size: 3 stride: 2 pad: 1", shape=(1, 2, 10, 10)),
    pool("ave_big_pad", "pool: AVE kernel_size: 4 stride: 3 pad: 3", shape=(1, 2, 10, 10)),
    pool("max_kernel_lt_stride", "pool: MAX kernel_size: 2 stride: 3", shape=(1, 2, 8, 8)),
    pool("ave_hw", "pool: AVE kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0"),
    pool("global_max", "pool: MAX global_pooling: true"),
    pool("global_ave", "pool: AVE global_pooling: true"),
    pool("floor", "pool: MAX kernel_size: 3 stride: 2 round_mode: FLOOR", shape=(1, 2, 10, 10)),
    pool("mask", "pool: MAX kernel_size: 3 stride: 2", tops=("pool", "mask")),
]
