"""Golden cases for the neuron layers (ReLU ... Dropout) of caffe_fx/lowering/layers/neuron.py."""
from . import Case, input_net

SHAPE = (2, 3, 5, 5)


def neuron(kind: str, name: str, params: str = "", shape=SHAPE, inplace: bool = False,
           before: str = "", **kw) -> Case:
    """One `kind` layer on `data` (or, with `before`, on the top of that layer, e.g. a
    TanH, so that an in-place layer writes over an intermediate blob)."""
    bottom = "data"
    pre = ""
    if before:
        pre = f'layer {{ name: "pre" type: "{before}" bottom: "data" top: "pre" }}\n'
        bottom = "pre"
    top = bottom if inplace else "out"
    layer = (f'layer {{ name: "{kind.lower()}" type: "{kind}" bottom: "{bottom}" '
             f'top: "{top}"\n  {params} }}\n')
    return Case(f"{kind.lower()}-{name}", kind, input_net({"data": shape}) + pre + layer,
                {"data": shape}, **kw)


CASES = [
    neuron("ReLU", "basic"),
    neuron("ReLU", "leaky", "relu_param { negative_slope: 0.1 }"),
    neuron("ReLU", "inplace", "relu_param { negative_slope: -0.3 }", inplace=True),
    neuron("ReLU", "inplace_intermediate", before="TanH", inplace=True),
    neuron("PReLU", "basic"),
    neuron("PReLU", "channel_shared", "prelu_param { channel_shared: true }"),
    neuron("PReLU", "2d", shape=(4, 6)),
    neuron("PReLU", "3d", shape=(2, 4, 7)),
    neuron("PReLU", "default_filler", randomize=False),
    neuron("PReLU", "filler", "prelu_param { filler { type: 'constant' value: -0.7 } }",
           randomize=False),
    neuron("PReLU", "shared_filler",
           "prelu_param { channel_shared: true filler { type: 'constant' value: 0.3 } }",
           randomize=False),
    neuron("PReLU", "inplace", inplace=True, before="AbsVal"),
    neuron("ELU", "basic"),
    neuron("ELU", "alpha", "elu_param { alpha: 0.4 }", low=-6.0, high=3.0),
    neuron("ELU", "inplace", "elu_param { alpha: 2.0 }", inplace=True),
    neuron("Sigmoid", "basic"),
    neuron("Sigmoid", "wide", low=-30.0, high=30.0),
    neuron("Sigmoid", "inplace", inplace=True),
    neuron("TanH", "basic", low=-4.0, high=4.0),
    neuron("AbsVal", "basic"),
    neuron("BNLL", "basic"),
    neuron("BNLL", "wide", low=-60.0, high=60.0),
    neuron("Power", "default", "power_param { }"),
    neuron("Power", "square", "power_param { power: 2 scale: 0.5 shift: 1 }"),
    neuron("Power", "sqrt", "power_param { power: 0.5 scale: 2 shift: 0.5 }", low=0.0, high=3.0),
    neuron("Power", "reciprocal", "power_param { power: -1 shift: 4 }", low=-2.0, high=2.0),
    neuron("Power", "fractional_neg", "power_param { power: -0.75 scale: 3 }", low=0.1, high=4.0),
    neuron("Power", "scale_shift", "power_param { scale: -1.5 shift: 0.25 }"),
    neuron("Power", "zero_power", "power_param { power: 0 scale: 3 shift: 2 }"),
    neuron("Power", "zero_scale", "power_param { power: 3 scale: 0 shift: 1.5 }"),
    neuron("Power", "zero_scale_and_power", "power_param { power: 0 scale: 0 shift: 0 }"),
    neuron("Power", "inplace", "power_param { power: 3 scale: 0.5 shift: -0.5 }", inplace=True),
    neuron("Exp", "basic"),
    neuron("Exp", "base2", "exp_param { base: 2 scale: 0.5 shift: 1 }"),
    neuron("Exp", "e_scale_shift", "exp_param { scale: 2 shift: -1.5 }"),
    neuron("Exp", "base_fraction", "exp_param { base: 0.3 scale: -1.25 shift: 0.5 }"),
    neuron("Exp", "base1", "exp_param { base: 1 scale: 3 shift: 2 }"),
    neuron("Log", "basic", low=0.05, high=5.0),
    neuron("Log", "base10", "log_param { base: 10 scale: 2 shift: 0.5 }", low=0.05, high=5.0),
    neuron("Log", "e_scale_shift", "log_param { scale: 0.5 shift: 3 }", low=-4.0, high=4.0),
    neuron("Log", "base_fraction", "log_param { base: 0.5 scale: -1 shift: 1 }",
           low=-4.0, high=0.9),
    neuron("Log", "inplace", "log_param { base: 2 }", inplace=True, low=0.05, high=5.0),
    neuron("Threshold", "basic"),
    neuron("Threshold", "value", "threshold_param { threshold: 0.3 }"),
    neuron("Threshold", "strict", "threshold_param { threshold: 1 }", integers={"data": 3}),
    neuron("Clip", "basic", "clip_param { min: -0.5 max: 0.7 }"),
    neuron("Clip", "inplace", "clip_param { min: 0 max: 6 }", inplace=True, low=-3.0, high=9.0),
    neuron("Clip", "min_gt_max", "clip_param { min: 1 max: -1 }"),
    neuron("Swish", "basic"),
    neuron("Swish", "beta", "swish_param { beta: 2.5 }", low=-8.0, high=8.0),
    neuron("Swish", "inplace", "swish_param { beta: 0.5 }", inplace=True),
    neuron("Dropout", "test", "dropout_param { dropout_ratio: 0.3 }"),
    neuron("Dropout", "inplace", inplace=True, before="TanH"),
    neuron("Dropout", "train", "dropout_param { dropout_ratio: 0.4 }", phase="train",
           random_blobs=("out",)),
    neuron("Dropout", "train_inplace", inplace=True, before="TanH", phase="train",
           random_blobs=("pre",)),
    neuron("Dropout", "train_ratio0", "dropout_param { dropout_ratio: 0 }", phase="train"),
    neuron("Dropout", "layer_phase_test", "phase: TEST", phase="train"),
]
