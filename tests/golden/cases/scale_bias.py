"""Golden cases for Scale and Bias: axis, num_axes (-1, 0), one or two bottoms, fillers."""
from . import Case, input_net


def _case(kind: str, name: str, params: str, shape=(2, 3, 4, 5), second=None,
          randomize=True) -> Case:
    inputs = {"data": shape} if second is None else {"data": shape, "s": second}
    bottoms = 'bottom: "data"' + ('' if second is None else ' bottom: "s"')
    field = "scale_param" if kind == "Scale" else "bias_param"
    layer = ('layer { name: "op" type: "%s" %s top: "op"\n  %s { %s } }\n'
             % (kind, bottoms, field, params))
    return Case(f"{kind.lower()}-{name}", kind, input_net(inputs) + layer, inputs,
                randomize=randomize)


def scalar_bottom(kind: str, params: str) -> Case:
    """Bottom 1 is a 0-axis blob (made by Reshape), which forces axis 0."""
    inputs = {"data": (2, 3, 4), "s1": (1,)}
    field = "scale_param" if kind == "Scale" else "bias_param"
    layers = ('layer { name: "to_scalar" type: "Reshape" bottom: "s1" top: "s"\n'
              '  reshape_param { shape { } } }\n'
              'layer { name: "op" type: "%s" bottom: "data" bottom: "s" top: "op"\n'
              '  %s { %s } }\n' % (kind, field, params))
    return Case(f"{kind.lower()}-two_bottoms_scalar", kind, input_net(inputs) + layers, inputs)


def scale(name, params="", **kw) -> Case:
    return _case("Scale", name, params, **kw)


def bias(name, params="", **kw) -> Case:
    return _case("Bias", name, params, **kw)


CASES = [
    scale("basic"),
    scale("bias_term", "bias_term: true"),
    scale("axis0_num_axes2", "axis: 0 num_axes: 2"),
    scale("axis2_to_end", "axis: 2 num_axes: -1"),
    scale("scalar", "num_axes: 0 bias_term: true"),
    scale("axis_neg", "axis: -2 num_axes: 2"),
    scale("default_fillers", "bias_term: true", randomize=False),
    scale("fillers", "bias_term: true filler { type: 'constant' value: 2.5 } "
          "bias_filler { type: 'constant' value: -0.5 }", randomize=False),
    scale("two_bottoms", second=(3,)),
    scale("two_bottoms_axis0", "axis: 0", second=(2, 3)),
    scale("two_bottoms_axis", "axis: 2", second=(4, 5)),
    scale("two_bottoms_bias", "bias_term: true", second=(3, 4)),
    scalar_bottom("Scale", "axis: 2 bias_term: true"),
    bias("basic"),
    bias("axis0_num_axes2", "axis: 0 num_axes: 2"),
    bias("to_end", "num_axes: -1"),
    bias("scalar", "num_axes: 0"),
    bias("filler", "filler { type: 'constant' value: 1.5 }", randomize=False),
    bias("two_bottoms", second=(3,)),
    bias("two_bottoms_axis", "axis: -2", second=(4, 5)),
    scalar_bottom("Bias", "axis: 1"),
]
