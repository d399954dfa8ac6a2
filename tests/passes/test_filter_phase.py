"""filter_phase: NetState rules as Caffe's Net::FilterNet applies them.

The rule semantics are checked on small nets; the NetState Net::Net makes (the file's
`state` kept, phase and level overridden, stages appended) is checked against real
Caffe: tests/golden/netstate/netstate.json (tools/make_netstate_goldens.py) holds which
layers and blobs pycaffe's Net kept, and compile(), caffe_fx.pycaffe.Net and summarize()
must keep the same."""
import json
from pathlib import Path

import pytest
from google.protobuf import text_format

import caffe_fx
import caffe_fx.pycaffe as caffe
from caffe_fx.errors import NetDefinitionError
from caffe_fx.passes.filter_phase import filter_phase
from caffe_fx.proto import caffe_pb2
from caffe_fx.summary import summarize

GOLDEN = json.loads((Path(__file__).resolve().parents[1] / "golden" / "netstate"
                     / "netstate.json").read_text())
CASES = GOLDEN["cases"]
CASE_IDS = [f"{c['net'].removesuffix('.prototxt')}-{c['phase']}-level{c['level']}-"
            f"{'+'.join(c['stages']) if c['stages'] is not None else 'nostages'}"
            for c in CASES]

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
    net.state.CopyFrom(caffe_pb2.NetState(phase=phase, level=level, stage=list(stages)))
    return [layer.name for layer in filter_phase(net).layer]


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
    filter_phase(net)
    assert net.SerializeToString() == before


def test_include_and_exclude_together_is_an_error():
    net = text_format.Parse(
        'layer { name: "x" type: "ReLU" include { phase: TEST } exclude { phase: TRAIN } }',
        caffe_pb2.NetParameter())
    with pytest.raises(NetDefinitionError, match=r"layer 'x' \(ReLU\).*both include and exclude"):
        filter_phase(net)


def test_pipeline_names_the_failing_pass():
    net = 'layer { name: "x" type: "ReLU" include { phase: TEST } exclude { phase: TRAIN } }'
    with pytest.raises(NetDefinitionError, match=r"both include and exclude.*"
                                                 r"\[in pass filter_phase\]$") as e:
        caffe_fx.compile(net)
    assert isinstance(e.value.__cause__, NetDefinitionError)


def _case(case):
    text = GOLDEN["nets"][case["net"]]
    stages = case["stages"] or ()
    return text, case["phase"].lower(), case["level"], stages


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_compile_keeps_what_caffe_keeps(case):
    text, phase, level, stages = _case(case)
    info = caffe_fx.compile(text, phase=phase, level=level, stages=stages).meta["caffe"]
    inputs = {layer for layer in case["layers"] if layer == "data"}  # not lowered: fed
    assert info.layers == [layer for layer in case["layers"] if layer not in inputs]
    assert list(info.blob_shapes) == case["blobs"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_pycaffe_net_keeps_what_caffe_keeps(case, tmp_path):
    path = tmp_path / case["net"]
    path.write_text(GOLDEN["nets"][case["net"]])
    kwargs = {"level": case["level"]}
    if case["stages"] is not None:
        kwargs["stages"] = case["stages"]
    net = caffe.Net(str(path), getattr(caffe, case["phase"]), **kwargs)
    assert list(net._layer_names) == case["layers"]
    assert list(net.blobs) == case["blobs"]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_summarize_keeps_what_caffe_keeps(case):
    text, phase, level, stages = _case(case)
    s = summarize(text, phase=phase, level=level, stages=stages)
    assert [r.name for r in s.rows] == case["layers"]
    tops = list(dict.fromkeys(t for r in s.rows for t in r.tops))
    assert tops == case["blobs"]
