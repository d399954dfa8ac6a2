"""The one pipeline (caffe_fx/pipeline.py): its passes, Net::Net's NetState, the runner that
names a failing pass, the invariant checks run after every pass, and what build returns."""
import dataclasses

import pytest
import torch
from google.protobuf import text_format

import caffe_fx
import caffe_fx.pycaffe as caffe
from caffe_fx import pipeline
from caffe_fx.errors import NetDefinitionError, UnsupportedLayerError
from caffe_fx.lowering.builder import Built
from caffe_fx.passes.name_automatic_tops import name_automatic_tops
from caffe_fx.proto import caffe_pb2

INPUT = ('layer { name: "data" type: "Input" top: "data" top: "label" '
         'input_param { shape { dim: 2 dim: 3 } shape { dim: 2 } } }\n')
LOSSES = INPUT + (
    'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
    'inner_product_param { num_output: 3 } }\n'
    'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }\n'
    'layer { name: "loss2" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" }\n')


def test_the_passes_in_order():
    assert [pipeline.pass_name(p) for p in pipeline.PROTO_PASSES] == ["filter_phase",
                                                                     "insert_splits"]
    assert [pipeline.pass_name(p) for p in pipeline.PASSES] == [
        "filter_phase", "insert_splits", "name_automatic_tops"]


def test_net_state_keeps_the_files_and_overrides_phase_and_level():
    net = text_format.Parse('state { phase: TRAIN level: 3 stage: "a" }', caffe_pb2.NetParameter())
    state = pipeline.with_state(net, "test", 1, ["b"]).state
    assert (state.phase, state.level, list(state.stage)) == (caffe_pb2.TEST, 1, ["a", "b"])
    assert net.state.phase == caffe_pb2.TRAIN  # the caller's message is not modified


def test_a_failing_pass_is_named_and_chained():
    net = INPUT + ('layer { name: "r" type: "ReLU" bottom: "data" top: "r" '
                   'include { phase: TEST } exclude { phase: TRAIN } }\n')
    with pytest.raises(NetDefinitionError, match=r"layer 'r'.*\[in pass filter_phase\]$"
                       ) as e:
        caffe_fx.compile(net)
    assert isinstance(e.value.__cause__, NetDefinitionError)
    assert "[in pass" not in str(e.value.__cause__)


def test_a_miswired_net_is_refused_after_filter_phase_with_its_other_problems():
    """Dangling bottoms are looked for in the phase's layers only (a TRAIN-only producer
    does not count for TEST), and come with the layer types caffe_fx lacks."""
    net = INPUT + ('layer { name: "t" type: "ReLU" bottom: "data" top: "t" '
                   'include { phase: TRAIN } }\n'
                   'layer { name: "r" type: "ReLU" bottom: "t" top: "r" }\n'
                   'layer { name: "u" type: "IPlugin" bottom: "data" top: "u" }\n')
    with pytest.raises(NetDefinitionError) as e:
        caffe_fx.compile(net, phase="test")
    assert isinstance(e.value, UnsupportedLayerError)
    assert "layer 'r' (ReLU): bottom[0] = 't' is not produced" in str(e.value)
    assert e.value.layers == [("u", "IPlugin")]


def test_a_failing_build_keeps_the_error_class_and_its_fields():
    net = INPUT + 'layer { name: "u" type: "IPlugin" bottom: "data" top: "u" }\n'
    with pytest.raises(UnsupportedLayerError, match=r"\[in build\]$") as e:
        caffe_fx.compile(net)
    assert e.value.layers == [("u", "IPlugin")]


def test_invariants_are_checked_after_every_pass(monkeypatch):
    monkeypatch.setenv(pipeline.CHECK_ENV, "1")

    def sloppy(net, where="<net>"):
        net.name = "changed"  # modifies its input: not a pure pass
        out = caffe_pb2.NetParameter()
        out.CopyFrom(net)
        return out

    net = text_format.Parse(INPUT, caffe_pb2.NetParameter())
    with pytest.raises(AssertionError, match=r"pass sloppy: modified its input"):
        pipeline.run_passes(net, "<net>", (sloppy,))

    def unwiring(net, where="<net>"):
        out = caffe_pb2.NetParameter()
        out.CopyFrom(net)
        out.layer.add(name="r", type="ReLU", bottom=["gone"], top=["r"])
        return out

    with pytest.raises(AssertionError, match=r"pass unwiring: left a bottom"):
        pipeline.run_passes(net, "<net>", (unwiring,))


def test_build_returns_a_frozen_result():
    built = pipeline.lower(pipeline.prepare(LOSSES, phase="train"))
    assert isinstance(built, Built)
    assert built.gm.meta["caffe"] is built.info
    assert [view.name for view, _ in built.modules] == ["ip"]
    assert not hasattr(built.gm, "_caffe_modules")
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.gm = None  # type: ignore[misc]


def test_automatic_tops_are_named_but_not_written():
    net = text_format.Parse(LOSSES, caffe_pb2.NetParameter())
    named = name_automatic_tops(net, auto_tops=lambda t: 1 if t == "SoftmaxWithLoss" else 0)
    assert [list(layer.top) for layer in named.layer[2:]] == [["(automatic)"],
                                                               ["(automatic)#2"]]
    assert not net.layer[2].top  # a copy
    prepared = pipeline.prepare(LOSSES, phase="train")
    assert "(automatic)" in prepared.graph.graph["blobs"]
    assert not any(layer.top for layer in prepared.proto.layer if layer.name == "loss")
    # compile() returns the anonymous loss tops, so that a training loop can backward
    gm = caffe_fx.compile(LOSSES, phase="train")
    assert gm.meta["caffe"].outputs == ["(automatic)", "(automatic)#2"]
    out = gm(data=torch.randn(2, 3), label=torch.tensor([0.0, 2.0]))
    assert out["(automatic)"].shape == () and torch.equal(out["(automatic)"],
                                                          out["(automatic)#2"])


def test_pycaffe_net_shows_the_automatic_blobs(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(LOSSES)
    net = caffe.Net(str(path), caffe.TRAIN)
    assert list(net.blobs)[-2:] == ["(automatic)", "(automatic)#2"]
    assert net.outputs == []
