"""caffe_fx.pycaffe.net_spec builds the nets real pycaffe's net_spec builds, text for text.

Goldens: tools/make_net_spec_goldens.py ran tests/pycaffe/net_spec_scripts.py under
BVLC pycaffe 1.0 and stored str(NetParameter) per script.
"""
# ruff: noqa: C408  (dict(...) keywords are how pycaffe users write layer fields)
from __future__ import annotations

import copy
import json
import types
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

import caffe_fx
from caffe_fx.proto.dialect_fields import FORK_FIELDS
from caffe_fx.errors import NetSpecError, NetSpecFieldError
from caffe_fx.proto import caffe_pb2
from caffe_fx.pycaffe import coord_map, net_spec
from caffe_fx.pycaffe.net_spec import L, NetSpec, P, pycaffe_text
from tests.pycaffe.net_spec_scripts import SCRIPTS

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "net_spec"
NETS = sorted(name for name in SCRIPTS if not name.startswith("error_"))
ERRORS = json.loads((GOLDEN / "errors.json").read_text())

# What the scripts use of `caffe`: net_spec's names plus the Phase constants.
CAFFE = types.SimpleNamespace(NetSpec=NetSpec, layers=net_spec.layers, params=net_spec.params,
                              to_proto=net_spec.to_proto, TRAIN=caffe_pb2.TRAIN,
                              TEST=caffe_pb2.TEST, coord_map=coord_map)


def golden_text(name: str) -> str:
    return (GOLDEN / f"{name}.prototxt").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", NETS)
def test_script_prints_as_real_pycaffe(name):
    net = SCRIPTS[name](CAFFE)
    assert isinstance(net, caffe_pb2.NetParameter)
    assert pycaffe_text(net) == golden_text(name)


@pytest.mark.parametrize("name", NETS)
def test_script_builds_the_same_message(name):
    expected = text_format.Parse(golden_text(name), caffe_pb2.NetParameter())
    assert SCRIPTS[name](CAFFE) == expected


@pytest.mark.parametrize("name", NETS)
def test_pycaffe_text_round_trips_golden(name):
    text = golden_text(name)
    assert pycaffe_text(text_format.Parse(text, caffe_pb2.NetParameter())) == text


@pytest.mark.parametrize("name", sorted(n for n in ERRORS if not n.startswith("error_crop_")))
def test_script_fails_as_real_pycaffe(name):
    builtin = {"TypeError": TypeError, "AttributeError": AttributeError}[ERRORS[name]["exception"]]
    with pytest.raises(builtin):
        SCRIPTS[name](CAFFE)


def test_param_name_dict_matches_pycaffe():
    """BVLC pycaffe's, plus what a fork's pycaffe adds for the fork parameters caffe_fx
    bundles (caffe_fx/proto/dialects.proto): ROIPooling -> roi_pooling, as
    caffe-fast-rcnn's net_spec names it."""
    ours = net_spec.param_name_dict()
    bvlc = json.loads((GOLDEN / "param_names.json").read_text())
    assert {k: v for k, v in ours.items() if k in bvlc} == bvlc
    forks = {name.split(".")[-1].removesuffix("_param") for name in FORK_FIELDS
             if name.startswith("caffe.LayerParameter.")}
    assert sorted(ours[k] for k in set(ours) - set(bvlc)) == sorted(forks)
    assert ours["ROIPooling"] == "roi_pooling" and ours["SmoothL1Loss"] == "smooth_l1_loss"


def test_bottom_that_is_not_a_top_names_layer_and_value():
    with pytest.raises(NetSpecError, match=r"ReLU bottom 0 is not a Top .* str: 'data'"):
        L.ReLU("data")


def test_unknown_keyword_names_layer_and_field():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1]))
    n.conv = L.Convolution(n.data, num_outputs=3)
    with pytest.raises(NetSpecFieldError,
                       match=r"layer 'conv' \(Convolution\): keyword num_outputs=3 names no "
                             r"field of ConvolutionParameter \(axis, .*\) nor of LayerParameter"):
        n.to_proto()


def test_unknown_nested_keyword_names_the_message():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1]))
    n.conv = L.Convolution(n.data, weight_filler=dict(typ="xavier"))
    with pytest.raises(NetSpecFieldError,
                       match=r"layer 'conv' \(Convolution\): keyword weight_filler=.*: "
                             r"FillerParameter has no field 'typ'; its fields: .*type"):
        n.to_proto()


def test_wrong_value_type_names_layer_and_field():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1]))
    n.conv = L.Convolution(n.data, num_output="3")
    with pytest.raises(NetSpecError, match=r"layer 'conv' \(Convolution\): keyword "
                                           r"num_output='3'"):
        n.to_proto()


def test_tuple_of_tops_assigned_whole_is_refused():
    n = NetSpec()
    n.pair = L.DummyData(shape=[dict(dim=[1]), dict(dim=[1])], ntop=2)
    with pytest.raises(NetSpecError, match=r"tuple.*one by one"):
        n.to_proto()


def test_params_gives_enum_constants():
    assert P.Pooling.MAX == caffe_pb2.PoolingParameter.MAX
    assert P.Data.LMDB == caffe_pb2.DataParameter.LMDB
    with pytest.raises(AttributeError, match=r"PoolingParameter has no enum value 'MEAN'; "
                                             r"its values: MAX, AVE, STOCHASTIC"):
        _ = P.Pooling.MEAN
    with pytest.raises(AttributeError, match=r"caffe_pb2 has no message NopeParameter"):
        _ = P.Nope.X


def test_netspec_attribute_protocol():
    n = NetSpec()
    n["data"] = L.Input(shape=dict(dim=[1]))
    assert n.data is n["data"]
    assert not hasattr(n, "missing")
    assert list(copy.copy(n).tops) == ["data"]


def test_layer_with_ntop_zero_returns_the_function():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1]))
    fn = L.Silence(n.data, ntop=0)
    assert isinstance(fn, net_spec.Function) and fn.tops == ()


@pytest.mark.parametrize("source", ["message", "text"])
def test_input_net_compiles(source):
    net = SCRIPTS["input_deploy"](CAFFE)
    gm = caffe_fx.compile(net if source == "message" else pycaffe_text(net))
    out = gm(data=torch.zeros(2, 1, 12, 12), extra=torch.zeros(2, 3))
    assert out["prob"].shape == (2, 3)
    torch.testing.assert_close(out["prob"].sum(1), torch.ones(2))
