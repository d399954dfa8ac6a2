"""Golden cases for the utility, data-ish and vision layers: Reduction, ArgMax, MVN,
Embed, Silence, DummyData, Parameter, SPP, Im2col, BatchReindex, Filter, and Input with
one shape for several tops."""
from . import Case, input_net

SHAPE = (2, 3, 5, 5)


def one(kind: str, name: str, params: str, shape=SHAPE, **kw) -> Case:
    """A single `kind` layer on one input `data`; `params` is its whole *_param text."""
    layer = ('layer { name: "l" type: "%s" bottom: "data" top: "out"\n  %s }\n'
             % (kind, params))
    return Case(f"{kind.lower()}-{name}", kind, input_net({"data": shape}) + layer,
                {"data": shape}, **kw)


def reduction(name: str, params: str, shape=SHAPE) -> Case:
    return one("Reduction", name, "reduction_param { %s }" % params, shape)


def argmax(name: str, params: str, shape=SHAPE, ties=False) -> Case:
    return one("ArgMax", name, "argmax_param { %s }" % params, shape,
               integers={"data": 3} if ties else {})


def mvn(name: str, params: str, shape=SHAPE) -> Case:
    return one("MVN", name, "mvn_param { %s }" % params, shape)


def embed(name: str, params: str, shape=(2, 4)) -> Case:
    return one("Embed", name, "embed_param { %s }" % params, shape, integers={"data": 7})


def spp(name: str, params: str, shape=(2, 3, 9, 9)) -> Case:
    return one("SPP", name, "spp_param { %s }" % params, shape)


def im2col(name: str, params: str, shape=(2, 3, 6, 7)) -> Case:
    return one("Im2col", name, "convolution_param { %s }" % params, shape)


def net(kind: str, name: str, inputs: dict, layers: str, **kw) -> Case:
    prototxt = (input_net(inputs) if inputs else "") + layers
    return Case(f"{kind.lower()}-{name}", kind, prototxt, inputs, **kw)


CASES = [
    reduction("sum_all", ""),
    reduction("asum_axis1", "operation: ASUM axis: 1"),
    reduction("sumsq_axis2_coeff", "operation: SUMSQ axis: 2 coeff: -0.5"),
    reduction("mean_axis_neg1", "operation: MEAN axis: -1"),
    reduction("mean_all_coeff", "operation: MEAN coeff: 3"),
    reduction("sum_2d_axis1", "operation: SUM axis: 1 coeff: 2", shape=(4, 6)),
    argmax("default", ""),
    argmax("ties", "", ties=True),
    argmax("top_k", "top_k: 3", ties=True),
    argmax("out_max_val", "out_max_val: true top_k: 2", ties=True),
    argmax("out_max_val_2d", "out_max_val: true", shape=(3, 7)),
    argmax("axis1", "axis: 1", ties=True),
    argmax("axis_top_k", "axis: 2 top_k: 2", ties=True),
    argmax("axis_out_max_val", "axis: 1 top_k: 2 out_max_val: true", ties=True),
    argmax("axis_neg1", "axis: -1 top_k: 3", ties=True),
    argmax("5d", "top_k: 2", shape=(2, 2, 2, 3, 2), ties=True),
    mvn("default", ""),
    mvn("no_variance", "normalize_variance: false"),
    mvn("across_channels", "across_channels: true"),
    mvn("eps", "eps: 0.5 across_channels: true"),
    mvn("2d", "eps: 0.1", shape=(3, 8)),
    mvn("2d_across", "across_channels: true eps: 0.1", shape=(3, 8)),
    mvn("3d", "", shape=(2, 3, 6)),
    embed("basic", "num_output: 5 input_dim: 7"),
    embed("no_bias", "num_output: 3 input_dim: 7 bias_term: false", shape=(5,)),
    spp("max_3", "pyramid_height: 3"),
    spp("ave_3", "pyramid_height: 3 pool: AVE"),
    spp("max_1", "pyramid_height: 1"),
    spp("ave_2_rect", "pyramid_height: 3 pool: AVE", shape=(2, 2, 7, 10)),
    spp("max_2_rect", "pyramid_height: 2", shape=(1, 2, 6, 11)),
    im2col("basic", "kernel_size: 3"),
    im2col("stride_pad", "kernel_size: 3 stride: 2 pad: 1"),
    im2col("hw_forms", "kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0"),
    im2col("dilation", "kernel_size: 3 dilation: 2 pad: 1"),
    im2col("nd_3d", "kernel_size: 2 stride: 2 pad: 1", shape=(2, 2, 3, 4, 5)),
    im2col("nd_1d", "kernel_size: 3 pad: 1 stride: 2", shape=(2, 3, 8)),
    im2col("axis2", "kernel_size: 2 axis: 2", shape=(2, 2, 3, 4, 5)),
    net("Silence", "basic", {"data": (2, 3), "label": (2,)},
        'layer { name: "s" type: "Silence" bottom: "label" }\n'
        'layer { name: "prob" type: "Softmax" bottom: "data" top: "prob" }\n'),
    net("Silence", "two_bottoms", {"data": (2, 3), "label": (2,)},
        'layer { name: "softmax" type: "Softmax" bottom: "data" top: "prob" }\n'
        'layer { name: "s" type: "Silence" bottom: "label" bottom: "prob" }\n'),
    net("DummyData", "constant_shape", {},
        'layer { name: "d" type: "DummyData" top: "a"\n'
        '  dummy_data_param { shape { dim: 2 dim: 3 dim: 4 }\n'
        '    data_filler { type: "constant" value: 1.5 } } }\n'),
    net("DummyData", "default_zero", {},
        'layer { name: "d" type: "DummyData" top: "a"\n'
        '  dummy_data_param { shape { dim: 3 } } }\n'),
    net("DummyData", "legacy_two_tops", {},
        'layer { name: "d" type: "DummyData" top: "a" top: "b"\n'
        '  dummy_data_param { num: 2 channels: 3 channels: 1 height: 4 width: 5 width: 2\n'
        '    data_filler { type: "constant" value: -2 } } }\n'),
    net("DummyData", "per_top_fillers", {},
        'layer { name: "d" type: "DummyData" top: "a" top: "b" top: "c"\n'
        '  dummy_data_param { shape { dim: 2 dim: 3 } shape { dim: 4 } shape { dim: 1 dim: 2 }\n'
        '    data_filler { type: "constant" value: 0.25 }\n'
        '    data_filler { type: "gaussian" std: 2 }\n'
        '    data_filler { type: "uniform" min: 1 max: 3 } } }\n'
        'layer { name: "r" type: "Reduction" bottom: "b" top: "bsum"\n'
        '  reduction_param { operation: SUMSQ } }\n',
        random_blobs=("b", "c", "bsum")),
    net("Parameter", "basic", {"data": (2, 3)},
        'layer { name: "p" type: "Parameter" top: "p"\n'
        '  parameter_param { shape { dim: 2 dim: 3 } } }\n'
        'layer { name: "prob" type: "Softmax" bottom: "data" top: "prob" }\n'),
    net("BatchReindex", "basic", {"data": (4, 3, 2), "idx": (6,)},
        'layer { name: "r" type: "BatchReindex" bottom: "data" bottom: "idx" top: "out" }\n',
        integers={"idx": 4}),
    net("Filter", "one", {"data": (6, 3, 2), "sel": (6, 1)},
        'layer { name: "f" type: "Filter" bottom: "data" bottom: "sel" top: "out" }\n',
        integers={"sel": 2}),
    net("Filter", "two_1d_selector", {"data": (5, 3), "label": (5,), "sel": (5,)},
        'layer { name: "f" type: "Filter" bottom: "data" bottom: "label" bottom: "sel"\n'
        '  top: "fdata" top: "flabel" }\n',
        integers={"sel": 3, "label": 10}),
    Case("input-one_shape_two_tops",
         "Input",
         'layer { name: "input" type: "Input" top: "a" top: "b"\n'
         '  input_param { shape { dim: 2 dim: 3 dim: 4 } } }\n'
         'layer { name: "prob" type: "Softmax" bottom: "b" top: "prob" }\n',
         {"a": (2, 3, 4), "b": (2, 3, 4)}),
]
