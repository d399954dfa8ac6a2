"""filter_phase: NetState rules as Caffe's Net::FilterNet applies them.

The expected layer sets come from the oracle's meta for the same nets (the goldens of
tests/golden/layers are TEST phase); the rule semantics are checked on small nets."""
import pytest
from google.protobuf import text_format

from caffe_fx.errors import NetDefinitionError
from caffe_fx.passes.filter_phase import filter_phase
from caffe_fx.proto import caffe_pb2

NET = """
layer { name: "a" type: "ReLU" include { phase: TRAIN } }
layer { name: "b" type: "ReLU" include { phase: TEST } }
layer { name: "c" type: "ReLU" exclude { phase: TEST } }
layer { name: "d" type: "ReLU" include { stage: "deploy" } }
layer { name: "e" type: "ReLU" include { min_level: 1 } }
layer { name: "f" type: "ReLU" include { not_stage: "deploy" } }
layer { name: "g" type: "ReLU" include { phase: TRAIN } include { stage: "x" stage: "y" } }
layer { name: "h" type: "ReLU" }
"""


def kept(phase, level=0, stages=()):
    net = text_format.Parse(NET, caffe_pb2.NetParameter())
    state = caffe_pb2.NetState(phase=phase, level=level, stage=list(stages))
    return [layer.name for layer in filter_phase(net, state).layer]


@pytest.mark.parametrize("phase, level, stages, expected", [
    (caffe_pb2.TRAIN, 0, (), ["a", "c", "f", "g", "h"]),
    (caffe_pb2.TEST, 0, (), ["b", "f", "h"]),
    (caffe_pb2.TEST, 1, ("deploy",), ["b", "d", "e", "h"]),
    (caffe_pb2.TEST, 0, ("x", "y"), ["b", "f", "g", "h"]),
    (caffe_pb2.TEST, 0, ("x",), ["b", "f", "h"]),
], ids=["train", "test", "test-level1-deploy", "test-both-stages", "test-one-stage"])
def test_rules(phase, level, stages, expected):
    assert kept(phase, level, stages) == expected


def test_input_is_not_mutated():
    net = text_format.Parse(NET, caffe_pb2.NetParameter())
    before = net.SerializeToString()
    filter_phase(net, caffe_pb2.NetState(phase=caffe_pb2.TEST))
    assert net.SerializeToString() == before


def test_include_and_exclude_together_is_an_error():
    net = text_format.Parse(
        'layer { name: "x" type: "ReLU" include { phase: TEST } exclude { phase: TRAIN } }',
        caffe_pb2.NetParameter())
    with pytest.raises(NetDefinitionError, match=r"layer 'x' \(ReLU\).*both include and exclude"):
        filter_phase(net, caffe_pb2.NetState(phase=caffe_pb2.TEST))
