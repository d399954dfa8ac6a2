"""Golden cases for InnerProduct: axis, transpose, no bias, 4-D and 2-D input."""
from . import Case, input_net


def ip(name: str, params: str, shape=(2, 3, 4, 5)) -> Case:
    layer = ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"\n'
             '  inner_product_param { %s } }\n' % params)
    return Case(f"innerproduct-{name}", "InnerProduct", input_net({"data": shape}) + layer,
                {"data": shape})


CASES = [
    ip("basic_4d", "num_output: 7"),
    ip("matrix", "num_output: 4", shape=(3, 6)),
    ip("axis2", "num_output: 3 axis: 2"),
    ip("axis_neg", "num_output: 3 axis: -1"),
    ip("transpose", "num_output: 5 transpose: true"),
    ip("transpose_axis2", "num_output: 2 transpose: true axis: 2"),
    ip("no_bias", "num_output: 6 bias_term: false"),
]
