"""Golden cases for LRN (caffe_fx/lowering/layers/lrn.py)."""
from . import Case, input_net


def lrn(name: str, params: str = "", shape=(2, 7, 6, 5), inplace: bool = False, **kw) -> Case:
    top = "data" if inplace else "norm"
    layer = (f'layer {{ name: "norm" type: "LRN" bottom: "data" top: "{top}"\n'
             f'  lrn_param {{ {params} }} }}\n')
    return Case(f"lrn-{name}", "LRN", input_net({"data": shape}) + layer, {"data": shape},
                low=-3.0, high=3.0, **kw)


CASES = [
    lrn("across_default"),
    lrn("across_params", "local_size: 3 alpha: 2.5 beta: 0.5 k: 2"),
    lrn("across_alexnet", "local_size: 5 alpha: 0.0001 beta: 0.75"),
    lrn("across_wider_than_channels", "local_size: 9 alpha: 3 beta: 1.2 k: 0.5",
        shape=(2, 3, 4, 4)),
    lrn("across_size1", "local_size: 1 alpha: 0.7 beta: 0.6"),
    lrn("across_inplace", "alpha: 0.5", inplace=True),
    lrn("within", "norm_region: WITHIN_CHANNEL local_size: 3 alpha: 1.5 beta: 0.75"),
    lrn("within_k_ignored", "norm_region: WITHIN_CHANNEL local_size: 5 alpha: 2 beta: 0.6 k: 7"),
    lrn("within_inplace", "norm_region: WITHIN_CHANNEL local_size: 3 alpha: 4 beta: 1.5",
        inplace=True),
]
