"""The one naming rule for blobs and layers (caffe_fx/lowering/naming.py)."""
import pytest
import torch

import caffe_fx
from caffe_fx.lowering.naming import Namer, python_name


@pytest.mark.parametrize("caffe_name, expected", [
    ("conv1", "conv1"),
    ("conv1_1", "conv1_1"),  # VGG: kept, although torch.fx counters look the same
    ("inception_3a/1x1", "inception_3a_1x1"),
    ("conv1/7x7_s2", "conv1_7x7_s2"),
    ("fc7.bn", "fc7_bn"),
    ("1x1", "_1x1"),
    ("input", "input_"),
    ("lambda", "lambda_"),
    ("self", "self_"),
    ("", "_"),
])
def test_python_name(caffe_name, expected):
    assert python_name(caffe_name) == expected


def test_module_names_avoid_module_attributes():
    assert python_name("forward", for_module=True) == "forward_"
    assert python_name("training", for_module=True) == "training_"


def test_collisions_resolved_first_come_first_served():
    namer = Namer()
    assert [namer(n) for n in ["a/b", "a_b", "a.b", "a_b_"]] == ["a_b", "a_b_", "a_b__", "a_b___"]


NET = """
layer { name: "input" type: "Input" top: "input" input_param { shape { dim: 1 dim: 2 dim: 5 dim: 5 } } }
layer { name: "conv1/3x3" type: "Convolution" bottom: "input" top: "conv1/3x3"
        convolution_param { num_output: 2 kernel_size: 3 } }
layer { name: "conv1_1" type: "Convolution" bottom: "conv1/3x3" top: "conv1_1"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "relu" type: "ReLU" bottom: "conv1_1" top: "conv1_1" }
"""


def test_generated_names_follow_the_rule():
    gm = caffe_fx.compile(NET, fuse=False)  # one node per layer
    names = [n.name for n in gm.graph.nodes]
    assert names == ["input_", "conv1_3x3", "conv1_1", "relu", "relu_out", "output"]
    assert sorted(gm.state_dict()) == ["conv1_1.bias", "conv1_1.weight", "conv1_3x3.bias",
                                       "conv1_3x3.weight"]
    out = gm(torch.ones(1, 2, 5, 5))
    assert list(out) == ["conv1_1"]  # output keys stay Caffe's blob names
    assert [n.meta.get("caffe_blob") for n in gm.graph.nodes][:4] == [
        "input", "conv1/3x3", "conv1_1", "conv1_1"]
    # Fused (the default), the Convolution -> ReLU pair is one node with the ReLU's name.
    fused = caffe_fx.compile(NET)
    calls = [n for n in fused.graph.nodes if n.op in ("call_module", "call_function")]
    assert [(n.name, n.target, n.kwargs) for n in calls] == [
        ("conv1_3x3", "conv1_3x3", {}), ("relu", "conv1_1", {"relu": True})]
    assert calls[1].meta["caffe_blob"] == "conv1_1"


def test_input_names_keep_their_case():
    net = ('layer { name: "in" type: "Input" top: "Data" top: "H" input_param { '
           'shape { dim: 1 dim: 2 } } }\n'
           'layer { name: "s" type: "Eltwise" bottom: "Data" bottom: "H" top: "Sum" }\n')
    gm = caffe_fx.compile(net)
    out = gm(Data=torch.ones(1, 2), H=torch.full((1, 2), 2.0))
    assert out["Sum"].tolist() == [[3.0, 3.0]]
