"""Golden cases for Eltwise: SUM (with coefficients), PROD and MAX over 2 or 3 bottoms."""
from . import Case, input_net


def eltwise(name: str, params: str = "", n: int = 2, shape=(2, 3, 4, 5)) -> Case:
    blobs = [f"x{i}" for i in range(n)]
    inputs = {b: shape for b in blobs}
    bottoms = " ".join(f'bottom: "{b}"' for b in blobs)
    layer = ('layer { name: "elt" type: "Eltwise" %s top: "elt"\n'
             '  eltwise_param { %s } }\n' % (bottoms, params))
    return Case(f"eltwise-{name}", "Eltwise", input_net(inputs) + layer, inputs)


CASES = [
    eltwise("sum"),
    eltwise("sum_coeff", "operation: SUM coeff: 0.5 coeff: -2"),
    eltwise("sum3", n=3),
    eltwise("sum3_coeff", "coeff: 1 coeff: -1 coeff: 3", n=3),
    eltwise("prod", "operation: PROD"),
    eltwise("prod3", "operation: PROD", n=3),
    eltwise("max", "operation: MAX"),
    eltwise("max3", "operation: MAX", n=3),
    eltwise("sum_2d", "coeff: 2 coeff: 1", shape=(3, 7)),
]
