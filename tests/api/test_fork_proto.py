"""Fork dialects: fork prototxts parse by field name with the bundled schema, a user's
caffe_proto= is carried over by name (never by wire number), fork fields a layer does not
read are refused, and every problem of a net comes in one error."""
import pytest
import torch

import caffe_fx
from caffe_fx.errors import (ProtoError, ProtoParseError, UnsupportedFieldError,
                             UnsupportedLayerError, NetProblemsError)
from caffe_fx.frontend.read import read_net
from caffe_fx.lowering.registry import LayerSpec, LayerView, field_problems
from caffe_fx.proto import caffe_pb2
from caffe_fx.proto.dialect_fields import FORK_FIELDS

# ppengtang/caffe's numbering (OICR's fork): its roi_pooling_param = 147 and
# smooth_l1_loss_param = 148 are BVLC's swish_param and clip_param.
PPENGTANG = """
syntax = "proto2";
package caffe;
message BlobShape { repeated int64 dim = 1 [packed = true]; }
message InputParameter { repeated BlobShape shape = 1; }
message ROIPoolingParameter {
  optional uint32 pooled_h = 1 [default = 0];
  optional uint32 pooled_w = 2 [default = 0];
  optional float spatial_scale = 3 [default = 1];
}
message SmoothL1LossParameter { optional float sigma = 1 [default = 1]; }
message DropoutParameter {
  optional float dropout_ratio = 1 [default = 0.5];
  optional bool scale_train = 2 [default = true];
}
message LossParameter {
  optional int32 ignore_label = 1;
  enum NormalizationMode { FULL = 0; VALID = 1; BATCH_SIZE = 2; PRE_FIXED = 3; NONE = 4; }
  optional NormalizationMode normalization = 3 [default = VALID];
  optional float pre_fixed_normalizer = 4 [default = 1];
}
message SPMParameter { optional uint32 spm_type = 1 [default = 0]; }
message LayerParameter {
  optional string name = 1;
  optional string type = 2;
  repeated string bottom = 3;
  repeated string top = 4;
  optional LossParameter loss_param = 101;
  optional DropoutParameter dropout_param = 108;
  optional InputParameter input_param = 143;
  optional ROIPoolingParameter roi_pooling_param = 147;
  optional SmoothL1LossParameter smooth_l1_loss_param = 148;
  optional SPMParameter spm_param = 151;
  optional string relu_param = 123;
}
message NetParameter {
  optional string name = 1;
  repeated LayerParameter layer = 100;
}
"""

NET = """
layer { name: "data" type: "Input" top: "data" top: "rois"
        input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } shape { dim: 2 dim: 5 } } }
layer { name: "relu" type: "ReLU" bottom: "data" top: "relu" }
layer { name: "roi_pool5" type: "ROIPooling" bottom: "relu" bottom: "rois" top: "pool5"
        roi_pooling_param { pooled_w: 6 pooled_h: 6 spatial_scale: 0.0625 } }
layer { name: "loss" type: "SmoothL1Loss" bottom: "pool5" bottom: "pool5" bottom: "pool5"
        bottom: "pool5" top: "loss" smooth_l1_loss_param { sigma: 3 } }
layer { name: "drop" type: "Dropout" bottom: "relu" top: "drop"
        dropout_param { dropout_ratio: 0.5 scale_train: false } }
"""


def _layer(net, name):
    return next(layer for layer in net.layer if layer.name == name)


def _fork_proto(tmp_path, text=PPENGTANG):
    pytest.importorskip("grpc_tools", reason="compiling a .proto needs grpcio-tools")
    proto = tmp_path / "caffe.proto"
    proto.write_text(text)
    return proto


def test_fork_fields_parse_by_name_without_caffe_proto():
    net = read_net(NET)
    assert _layer(net, "roi_pool5").roi_pooling_param.pooled_w == 6
    assert _layer(net, "roi_pool5").roi_pooling_param.spatial_scale == pytest.approx(0.0625)
    assert _layer(net, "loss").smooth_l1_loss_param.sigma == 3
    assert _layer(net, "drop").dropout_param.scale_train is False
    # Nothing landed in the BVLC fields that share ppengtang's numbers.
    assert not _layer(net, "roi_pool5").HasField("swish_param")
    assert not _layer(net, "loss").HasField("clip_param")


def test_every_merged_field_names_its_fork():
    assert FORK_FIELDS["caffe.LayerParameter.roi_pooling_param"][0] == \
        "rbgirshick/caffe-fast-rcnn"
    assert FORK_FIELDS["caffe.DropoutParameter.scale_train"][0] == "rbgirshick/caffe-fast-rcnn"
    for name in FORK_FIELDS:
        message, field = name.removeprefix("caffe.").split(".")
        assert field in getattr(caffe_pb2, message).DESCRIPTOR.fields_by_name
    # Fast R-CNN's own numbers are kept where BVLC leaves them free.
    fields = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert fields["roi_pooling_param"].number == 8266711
    assert fields["smooth_l1_loss_param"].number == 8266712
    assert fields["swish_param"].number == 147 and fields["clip_param"].number == 148


def test_caffe_proto_is_carried_over_by_name_not_by_number(tmp_path):
    net = read_net(NET, caffe_proto=_fork_proto(tmp_path))
    roi, loss, drop = (_layer(net, n) for n in ("roi_pool5", "loss", "drop"))
    assert (roi.roi_pooling_param.pooled_h, roi.roi_pooling_param.pooled_w) == (6, 6)
    assert not roi.HasField("swish_param")
    assert loss.smooth_l1_loss_param.sigma == 3 and not loss.HasField("clip_param")
    assert drop.dropout_param.HasField("scale_train") and not drop.dropout_param.scale_train


def test_caffe_proto_fields_without_counterpart_are_all_refused(tmp_path):
    text = NET + """
layer { name: "spm" type: "SPMMaxPooling" bottom: "relu" top: "spm" spm_param { spm_type: 1 } }
layer { name: "cls" type: "SoftmaxWithLoss" bottom: "relu" bottom: "relu" top: "cls"
        loss_param { normalization: PRE_FIXED pre_fixed_normalizer: 2 } }
layer { name: "r2" type: "ReLU" bottom: "relu" top: "r2" relu_param: "x" }
"""
    with pytest.raises(ProtoParseError) as e:
        read_net(text, caffe_proto=_fork_proto(tmp_path))
    message = str(e.value)
    assert "4 field(s)" in message
    assert "layer 'spm'.spm_param: caffe_fx knows no such field" in message
    assert "layer 'cls'.loss_param.normalization = PRE_FIXED: caffe_fx knows no such value" \
        in message
    assert "layer 'cls'.loss_param.pre_fixed_normalizer: caffe_fx knows no such field" in message
    # Same name, another type: refused, never re-typed.
    assert "layer 'r2'.relu_param: the fork's string is caffe_fx's message ReLUParameter" \
        in message


def test_unknown_fields_are_all_reported_at_once():
    text = NET.replace('top: "relu" }', 'top: "relu" bogus: 1 }') + \
        'layer { name: "p" type: "Pooling" bottom: "relu" top: "p" ' \
        'pooling_param { bogus_mode: false kernel_size: 2 } }\n'
    with pytest.raises(ProtoParseError) as e:
        read_net(text)
    message = str(e.value)
    assert "2 field(s)" in message
    assert "<prototxt string>:4:" in message and "LayerParameter has no field 'bogus'" in message
    assert "caffe.PoolingParameter has no field 'bogus_mode'" in message
    assert "caffe_proto=" in message


def test_every_problem_of_a_net_in_one_error():
    text = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "r" type: "ReLU" bottom: "data" top: "r" bogus: 1 }
layer { name: "x" type: "MysteryLayer" bottom: "r" top: "x" }
layer { name: "py" type: "Python" bottom: "x" top: "y" python_param { module: "m" layer: "L" } }
"""
    with pytest.raises(NetProblemsError) as e:
        caffe_fx.compile(text)
    message = str(e.value)
    assert "3 kinds of problems" in message
    assert "has no field 'bogus'" in message
    assert "layer 'x' (type: MysteryLayer)" in message
    assert "Python layers 'py'" in message
    # One class that every kind's except clause catches.
    assert isinstance(e.value, (UnsupportedLayerError)) and isinstance(e.value, ProtoParseError)
    assert isinstance(e.value, UnsupportedFieldError)
    assert e.value.layers == [("x", "MysteryLayer")]


def test_one_kind_of_problem_keeps_its_own_class():
    text = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 } } }
layer { name: "x" type: "MysteryLayer" bottom: "data" top: "x" }
layer { name: "y" type: "OtherLayer" bottom: "x" top: "y" }
"""
    with pytest.raises(UnsupportedLayerError) as e:
        caffe_fx.compile(text)
    assert not isinstance(e.value, NetProblemsError)
    assert e.value.layers == [("x", "MysteryLayer"), ("y", "OtherLayer")]


def test_a_field_the_layer_type_does_not_read_is_ignored_as_caffe_ignores_it_and_said():
    """py-faster-rcnn's ZF test nets give a Softmax a loss_param: Caffe runs them."""
    text = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "s" type: "Softmax" bottom: "data" top: "s" loss_param { ignore_label: -1 } }
layer { name: "r" type: "ReLU" bottom: "s" top: "r" dropout_param { scale_train: false } }
"""
    with pytest.warns(caffe_fx.errors.IgnoredFieldWarning) as record:
        gm = caffe_fx.compile(text)
    message = str(record[0].message)
    assert "2 field(s) set where the layer type does not read them" in message
    assert "layer 's' (Softmax): loss_param (it reads: softmax_param)" in message
    assert "layer 'r' (ReLU): dropout_param (it reads: relu_param)" in message
    assert set(gm(data=torch.zeros(2, 3))) == {"r"}


def test_a_fork_parameter_the_layer_type_does_not_read_is_an_error():
    text = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 } } }
layer { name: "r" type: "ReLU" bottom: "data" top: "r"
        roi_pooling_param { pooled_h: 2 } loss_param { ignore_label: 1 } }
"""
    with pytest.raises(UnsupportedFieldError) as e:
        caffe_fx.compile(text)
    assert str(e.value) == (
        "<prototxt string>: layer 'r' (ReLU): roi_pooling_param (a field of the fork "
        "rbgirshick/caffe-fast-rcnn) is set, but caffe_fx's ReLU does not read it; allowed: "
        "relu_param [in build]")


def test_a_fork_field_inside_a_read_message_needs_the_layer_to_declare_it():
    layer = caffe_pb2.LayerParameter(name="d", type="Dropout")
    layer.dropout_param.scale_train = False
    view = LayerView("d", "Dropout", ("x",), ("y",), layer, caffe_pb2.TEST, ((1,),))

    def fn(view):  # pragma: no cover  (never lowered here)
        raise AssertionError

    reads_message = LayerSpec("Dropout", fn, ("dropout_param",))
    problems = field_problems(view, reads_message)
    assert len(problems) == 1
    assert "dropout_param.scale_train = False (a field of the fork " \
           "rbgirshick/caffe-fast-rcnn) is not supported" in problems[0]
    declares = LayerSpec("Dropout", fn, ("dropout_param", "dropout_param.scale_train"))
    assert field_problems(view, declares) == []


def test_cli_takes_caffe_proto(tmp_path, capsys):
    from caffe_fx.cli import main

    proto = _fork_proto(tmp_path)
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(NET)
    out = tmp_path / "net.dot"
    assert main(["draw", str(prototxt), "-o", str(out), "--caffe-proto", str(proto)]) == 0
    assert "roi_pool5" in out.read_text()
    assert main(["info", str(prototxt), "--caffe-proto", str(proto)]) == 0
    assert "roi_pool5" in capsys.readouterr().out
    assert main(["time", "--model", str(prototxt), "--caffe-proto", str(proto),
                 "--iterations", "1"]) == 0
    assert main(["draw", str(prototxt), "-o", str(tmp_path / "x.dot"),
                 "--caffe-proto", str(tmp_path / "absent.proto")]) == 1
    assert "no such .proto file" in capsys.readouterr().err


def test_missing_fork_schema(tmp_path):
    with pytest.raises(ProtoError, match=r"no such \.proto file"):
        caffe_fx.compile(NET, caffe_proto=tmp_path / "absent.proto")
