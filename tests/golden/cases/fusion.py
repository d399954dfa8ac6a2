"""Golden cases for compile()'s fused Convolution -> BatchNorm -> Scale -> ReLU chains
(caffe_fx/lowering/fuse.py), in place as ResNet and MobileNet write them, with the
chains the pass must leave alone beside them.  Layer "ConvChain": tests/layers/
test_fusion.py picks them."""
from . import Case, input_net


def _conv(name: str, bottom: str, top: str, params: str) -> str:
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}"\n'
            f'  convolution_param {{ {params} }} }}\n')


def _bn_scale(name: str, blob: str, bn: str = "", scale: str = "bias_term: true",
              relu: bool = True) -> str:
    out = (f'layer {{ name: "bn_{name}" type: "BatchNorm" bottom: "{blob}" top: "{blob}"\n'
           f'  batch_norm_param {{ {bn} }} }}\n'
           f'layer {{ name: "scale_{name}" type: "Scale" bottom: "{blob}" top: "{blob}"\n'
           f'  scale_param {{ {scale} }} }}\n')
    if relu:
        out += f'layer {{ name: "relu_{name}" type: "ReLU" bottom: "{blob}" top: "{blob}" }}\n'
    return out


def _sum(top: str, a: str, b: str, relu: str) -> str:
    """A two-bottom Eltwise SUM and a ReLU named `relu` in place on it."""
    return (f'layer {{ name: "{top}" type: "Eltwise" bottom: "{a}" bottom: "{b}" '
            f'top: "{top}" }}\n'
            f'layer {{ name: "{relu}" type: "ReLU" bottom: "{top}" top: "{top}" }}\n')


def chain(name: str, body: str, shape=(2, 4, 9, 9)) -> Case:
    return Case(f"fusion-{name}", "ConvChain", input_net({"data": shape}) + body,
                {"data": shape})


CASES = [
    # ResNet's stem: conv with bias, BN, Scale with bias, ReLU, all in place.
    chain("resnet_stem", _conv("conv1", "data", "conv1",
                               "num_output: 6 kernel_size: 3 stride: 2 pad: 1")
          + _bn_scale("conv1", "conv1")),
    # A bias-less 1x1 conv and no ReLU (a ResNet shortcut), then an Eltwise reading it.
    chain("shortcut_eltwise", _conv("a", "data", "a", "num_output: 4 kernel_size: 1 "
                                    "bias_term: false")
          + _bn_scale("a", "a", relu=False)
          + _conv("b", "data", "b", "num_output: 4 kernel_size: 3 pad: 1")
          + _bn_scale("b", "b", bn="eps: 0.001")
          + 'layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }\n'),
    # MobileNet: a depthwise conv (group = channels), BN, Scale, ReLU; then a 1x1.
    chain("depthwise", _conv("dw", "data", "dw", "num_output: 4 group: 4 kernel_size: 3 "
                             "pad: 1 bias_term: false")
          + _bn_scale("dw", "dw")
          + _conv("pw", "dw", "pw", "num_output: 8 kernel_size: 1 bias_term: false")
          + _bn_scale("pw", "pw")),
    # Not fused: a conv whose top is read twice (BN and Pooling), and a BN -> Scale
    # without a conv.  Fused: a dilated conv with only a Scale after it.
    chain("shared_top", _conv("c", "data", "c", "num_output: 4 kernel_size: 3")
          + 'layer { name: "pool" type: "Pooling" bottom: "c" top: "pool"\n'
            '  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
          + 'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "bn" }\n'
          + 'layer { name: "s" type: "Scale" bottom: "bn" top: "s" }\n'
          + _conv("d", "data", "d", "num_output: 3 kernel_size: 3 dilation: 2 pad: 2")
          + 'layer { name: "sd" type: "Scale" bottom: "d" top: "d" scale_param { '
            'bias_term: true } }\n'),
    # AlexNet/VGG/SqueezeNet: a conv and its in-place ReLU only (fused), then a conv whose
    # ReLU writes another top, so that the conv's own top stays a blob (fused too: the
    # GraphModule returns only "out"), and a strided grouped conv and ReLU (fused).
    chain("conv_relu", _conv("c1", "data", "c1", "num_output: 6 kernel_size: 3 pad: 1")
          + 'layer { name: "r1" type: "ReLU" bottom: "c1" top: "c1" }\n'
          + _conv("c2", "c1", "c2", "num_output: 4 kernel_size: 1")
          + 'layer { name: "r2" type: "ReLU" bottom: "c2" top: "r2" }\n'
          + _conv("c3", "r2", "c3", "num_output: 4 group: 2 kernel_size: 3 stride: 2")
          + 'layer { name: "out" type: "ReLU" bottom: "c3" top: "out" }\n'),
    # ResNet blocks: the shortcut "a" read by the branch's first conv and the sum, the
    # sum's ReLU in place (the sum may write into "a"); an identity block over it (its
    # sum may write into the first's, which is "a"'s memory); a one-conv block, whose
    # sum must not write into its conv's own bottom.
    chain("residual", _conv("a", "data", "a", "num_output: 4 kernel_size: 1")
          + _bn_scale("a", "a")
          + _conv("b", "a", "b", "num_output: 3 kernel_size: 3 pad: 1 bias_term: false")
          + _bn_scale("b", "b")
          + _conv("c", "b", "c", "num_output: 4 kernel_size: 1 bias_term: false")
          + _bn_scale("c", "c", relu=False)
          + _sum("s1", "a", "c", "r1")
          + _conv("d", "s1", "d", "num_output: 3 kernel_size: 1")
          + _bn_scale("d", "d")
          + _conv("e", "d", "e", "num_output: 4 kernel_size: 3 pad: 1")
          + _bn_scale("e", "e", relu=False)
          + _sum("s2", "e", "s1", "r2")
          + _conv("f", "s2", "f", "num_output: 4 kernel_size: 3 pad: 1")
          + _bn_scale("f", "f", relu=False)
          + _sum("s3", "s2", "f", "r3")),
    # Sums fused but not in place: with the net's input; with a shortcut that a Pooling
    # reads after the sum; a conv without BatchNorm then a sum without ReLU (MobileNet
    # v2).  Not fused: a sum with coefficients, a product.
    chain("residual_kept", _conv("a", "data", "a", "num_output: 4 kernel_size: 3 pad: 1")
          + _bn_scale("a", "a", relu=False)
          + 'layer { name: "s1" type: "Eltwise" bottom: "data" bottom: "a" top: "s1" }\n'
          + _conv("b", "s1", "b", "num_output: 4 kernel_size: 1")
          + 'layer { name: "s2" type: "Eltwise" bottom: "b" bottom: "s1" top: "s2" }\n'
          + 'layer { name: "pool" type: "Pooling" bottom: "s1" top: "pool"\n'
            '  pooling_param { pool: MAX kernel_size: 3 stride: 3 } }\n'
          + _conv("c", "s2", "c", "num_output: 4 kernel_size: 1")
          + 'layer { name: "s3" type: "Eltwise" bottom: "c" bottom: "s2" top: "s3"\n'
            '  eltwise_param { coeff: 1 coeff: -0.5 } }\n'
          + _conv("d", "s3", "d", "num_output: 4 kernel_size: 1")
          + 'layer { name: "s4" type: "Eltwise" bottom: "d" bottom: "s3" top: "s4"\n'
            '  eltwise_param { operation: PROD } }\n'),
    # Conv -> BatchNorm -> Scale, each with its own top: fused as far as the first blob
    # asked for as an output (tests/layers/test_fusion.py test_an_output_ends_the_chain).
    chain("not_in_place", _conv("conv", "data", "c", "num_output: 3 kernel_size: 3")
          + 'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "b" }\n'
          + 'layer { name: "sc" type: "Scale" bottom: "b" top: "s" scale_param { '
            'bias_term: true } }\n', shape=(1, 2, 5, 5)),
]
