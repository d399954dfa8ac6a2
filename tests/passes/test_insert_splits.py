"""insert_splits: Caffe's implicit Split layers, named as Caffe names them.

The expected names and loss weights are what real Caffe reports for these nets
(`caffe-oracle forward NET` -> meta layers and blob_loss_weights); the first case is
also src/caffe/test/test_split_layer.cpp's."""
from google.protobuf import text_format

from caffe_fx.passes.insert_splits import insert_splits
from caffe_fx.proto import caffe_pb2


def run(text):
    net = text_format.Parse(text, caffe_pb2.NetParameter())
    return [(layer.name, layer.type, list(layer.bottom), list(layer.top),
             list(layer.loss_weight)) for layer in insert_splits(net).layer]


def test_inplace_producer_names_the_split():
    layers = run("""
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
    layer { name: "innerprod1" type: "InnerProduct" bottom: "data" top: "innerprod1" }
    layer { name: "relu1" type: "ReLU" bottom: "innerprod1" top: "innerprod1" }
    layer { name: "innerprod2" type: "InnerProduct" bottom: "innerprod1" top: "innerprod2" }
    layer { name: "innerprod3" type: "InnerProduct" bottom: "innerprod1" top: "innerprod3" }
    """)
    assert layers[3] == ("innerprod1_relu1_0_split", "Split", ["innerprod1"],
                         ["innerprod1_relu1_0_split_0", "innerprod1_relu1_0_split_1"], [])
    assert layers[4][2] == ["innerprod1_relu1_0_split_0"]
    assert layers[5][2] == ["innerprod1_relu1_0_split_1"]


def test_explicit_loss_weight_counts_as_a_consumer():
    layers = run("""
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }
    layer { name: "loss" type: "Power" bottom: "data" top: "loss" loss_weight: 2 }
    layer { name: "use" type: "ReLU" bottom: "loss" top: "use" }
    """)
    loss, split, use = layers[1], layers[2], layers[3]
    assert loss[4] == []  # the weight moved to the split's top 0
    assert split == ("loss_loss_0_split", "Split", ["loss"],
                     ["loss_loss_0_split_0", "loss_loss_0_split_1"], [2.0, 0.0])
    assert use[2] == ["loss_loss_0_split_1"]


def test_single_consumer_gets_no_split():
    layers = run("""
    layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }
    layer { name: "r" type: "ReLU" bottom: "data" top: "r" }
    """)
    assert [t for _, t, *_ in layers] == ["Input", "ReLU"]
