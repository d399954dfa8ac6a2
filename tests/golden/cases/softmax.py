"""Golden cases for Softmax: the default channel axis, other axes, negative axes."""
from . import Case, input_net


def softmax(name: str, params: str, shape=(2, 3, 5, 5)) -> Case:
    layer = ('layer { name: "prob" type: "Softmax" bottom: "data" top: "prob"\n'
             '  softmax_param { %s } }\n' % params)
    return Case(f"softmax-{name}", "Softmax", input_net({"data": shape}) + layer,
                {"data": shape})


CASES = [
    softmax("default", ""),
    softmax("axis2", "axis: 2"),
    softmax("axis0", "axis: 0"),
    softmax("axis_neg1", "axis: -1"),
    softmax("axis_neg3", "axis: -3"),
    softmax("2d", "", shape=(4, 10)),
    softmax("3d_axis_neg1", "axis: -1", shape=(2, 3, 6)),
]
