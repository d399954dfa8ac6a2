"""The SSD, SegNet and DenseNet dialects (issue #11): every published net of ../shared/models
that uses their fields parses with the bundled schema, each of those fields lands in the
field of its name, and a SegNet-numbered caffe_proto= (its numbers clash with BVLC's) is
carried over by name.

The merged fields were copied from the forks' own compiled caffe_pb2 descriptors
(../shared/caffe-oracle/forks/{ssd,segnet}.tar.gz) and, for ceil_mode, from BVLC/caffe pull
request #3057, which shicai/DenseNet-Caffe was written for."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import UnsupportedFieldError
from caffe_fx.frontend.read import read_net
from caffe_fx.proto import caffe_pb2
from caffe_fx.proto.dialect_fields import FORK_FIELDS
from tests.nets.oracle import MODELS

FORKS = ("weiliu89/caffe", "alexgkendall/caffe-segnet", "BVLC/caffe#3057")
# {short field name: full name} of every field these three forks add.
FIELDS = {name.rsplit(".", 1)[1]: name for name, (fork, _) in FORK_FIELDS.items()
          if fork in FORKS}
_USES = re.compile(r"^\s*(%s)\b" % "|".join(sorted(FIELDS)), re.M)


def _published() -> list[Path]:
    if not MODELS.is_dir():
        return []
    # template/ holds MobileNet-SSD's generator inputs (`num_output: cls3x`), not nets.
    return sorted(p for p in MODELS.rglob("*.prototxt")
                  if "template" not in p.parts and "layer" in p.read_text(errors="replace")
                  and _USES.search(p.read_text(errors="replace")))


PUBLISHED = _published()


def _set_fields(msg, out: set[str]) -> set[str]:
    for fd, value in msg.ListFields():
        out.add(fd.full_name)
        if fd.message_type is not None:
            for v in (value if fd.is_repeated else [value]):
                _set_fields(v, out)
    return out


def test_the_three_forks_nets_are_found():
    if not MODELS.is_dir():
        pytest.skip("../shared/models is absent")
    names = {str(p.relative_to(MODELS)) for p in PUBLISHED}
    for wanted in ("shicai+DenseNet-Caffe/DenseNet_121.prototxt",
                   "alexgkendall+SegNet-Tutorial/Models/segnet_train.prototxt",
                   "chuanqi305+MobileNet-SSD/voc/MobileNetSSD_train.prototxt",
                   "Shinung+gpu-rest-engine/models/VGGNet/VOC0712/SSD_300x300/train.prototxt"):
        assert wanted in names
    assert len(PUBLISHED) >= 30


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: str(p.relative_to(MODELS)))
def test_published_net_parses_with_every_fork_field_in_place(path):
    unknown: list[str] = []
    net = read_net(path, unknown=unknown)
    assert unknown == []
    used = {FIELDS[m] for m in _USES.findall(path.read_text())}
    assert used and used <= _set_fields(net, set())


def test_published_values_land_by_name():
    if not MODELS.is_dir():
        pytest.skip("../shared/models is absent")
    dense = read_net(MODELS / "shicai+DenseNet-Caffe/DenseNet_121.prototxt")
    pool1 = next(layer for layer in dense.layer if layer.name == "pool1")
    assert pool1.pooling_param.HasField("ceil_mode") and not pool1.pooling_param.ceil_mode
    assert not pool1.pooling_param.HasField("round_mode")
    seg = read_net(MODELS / "alexgkendall+SegNet-Tutorial/Models/segnet_train.prototxt")
    up = [layer for layer in seg.layer if layer.type == "Upsample"]
    assert up and up[0].upsample_param.scale == 2 and not up[0].HasField("embed_param")
    loss = next(layer for layer in seg.layer if layer.type == "SoftmaxWithLoss")
    assert loss.loss_param.weight_by_label_freqs
    assert not loss.loss_param.HasField("normalization")
    assert len(loss.loss_param.class_weighting) == 11
    ssd = read_net(MODELS / "chuanqi305+MobileNet-SSD/voc/MobileNetSSD_deploy.prototxt")
    prior = [layer for layer in ssd.layer if layer.type == "PriorBox"]
    assert len(prior) == 6 and prior[0].prior_box_param.min_size[0] == pytest.approx(60.0)
    out = next(layer for layer in ssd.layer if layer.type == "DetectionOutput")
    assert out.detection_output_param.code_type == caffe_pb2.PriorBoxParameter.CENTER_SIZE


def test_clashing_fork_numbers_are_renumbered_and_recorded():
    layer = caffe_pb2.LayerParameter.DESCRIPTOR.fields_by_name
    assert layer["bn_param"].number == 45  # free in BVLC: kept
    assert layer["prior_box_param"].number == 203
    assert layer["embed_param"].number == 137 and layer["tile_param"].number == 138
    assert FORK_FIELDS["caffe.LayerParameter.upsample_param"] == \
        ("alexgkendall/caffe-segnet", 137)
    assert FORK_FIELDS["caffe.LayerParameter.dense_image_data_param"] == \
        ("alexgkendall/caffe-segnet", 138)
    assert FORK_FIELDS["caffe.LossParameter.weight_by_label_freqs"][1] == 3
    assert FORK_FIELDS["caffe.DropoutParameter.sample_weights_test"][1] == 2
    assert FORK_FIELDS["caffe.PoolingParameter.ceil_mode"] == ("BVLC/caffe#3057", 13)
    pooling = caffe_pb2.PoolingParameter.DESCRIPTOR.fields_by_name
    assert pooling["round_mode"].number == 13 and pooling["ceil_mode"].default_value is True


# SegNet's numbering, trimmed to what NET uses: upsample_param 137 is BVLC's embed_param,
# LossParameter.weight_by_label_freqs 3 is BVLC's normalization.
SEGNET = """
syntax = "proto2";
package caffe;
message FillerParameter { optional string type = 1 [default = 'constant']; }
message BNParameter {
  enum BNMode { LEARN = 0; INFERENCE = 1; }
  optional FillerParameter scale_filler = 1;
  optional FillerParameter shift_filler = 2;
  optional BNMode bn_mode = 3 [default = LEARN];
}
message UpsampleParameter {
  optional uint32 scale = 1 [default = 2];
  optional uint32 upsample_h = 6;
  optional uint32 upsample_w = 7;
}
message LossParameter {
  optional int32 ignore_label = 1;
  optional bool normalize = 2 [default = true];
  optional bool weight_by_label_freqs = 3 [default = false];
  repeated float class_weighting = 4;
}
message DropoutParameter {
  optional float dropout_ratio = 1 [default = 0.5];
  optional bool sample_weights_test = 2 [default = false];
}
message LayerParameter {
  optional string name = 1;
  optional string type = 2;
  repeated string bottom = 3;
  repeated string top = 4;
  optional BNParameter bn_param = 45;
  optional LossParameter loss_param = 101;
  optional DropoutParameter dropout_param = 108;
  optional UpsampleParameter upsample_param = 137;
}
message NetParameter {
  optional string name = 1;
  repeated string input = 3;
  repeated LayerParameter layer = 100;
}
"""

NET = """
input: "data"
layer { name: "bn" type: "BN" bottom: "data" top: "bn"
        bn_param { bn_mode: INFERENCE scale_filler { type: "constant" } } }
layer { name: "up" type: "Upsample" bottom: "bn" bottom: "mask" top: "up"
        upsample_param { scale: 2 upsample_h: 30 upsample_w: 40 } }
layer { name: "drop" type: "Dropout" bottom: "up" top: "drop"
        dropout_param { dropout_ratio: 0.5 sample_weights_test: true } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "drop" bottom: "label" top: "loss"
        loss_param { weight_by_label_freqs: true class_weighting: 0.5
                     class_weighting: 2 ignore_label: 11 } }
"""


def _check_segnet_net(net) -> None:
    bn, up, drop, loss = net.layer
    assert bn.bn_param.bn_mode == caffe_pb2.BNParameter.INFERENCE
    assert bn.bn_param.scale_filler.type == "constant"
    assert (up.upsample_param.upsample_h, up.upsample_param.upsample_w) == (30, 40)
    assert not up.HasField("embed_param")
    assert drop.dropout_param.sample_weights_test
    assert not drop.dropout_param.HasField("scale_train")
    assert loss.loss_param.weight_by_label_freqs
    assert list(loss.loss_param.class_weighting) == [0.5, 2.0]
    assert loss.loss_param.ignore_label == 11
    assert not loss.loss_param.HasField("normalization")


def test_segnet_net_parses_with_the_bundled_schema():
    _check_segnet_net(read_net(NET))


def test_segnet_numbered_caffe_proto_is_carried_over_by_name(tmp_path):
    pytest.importorskip("grpc_tools", reason="compiling a .proto needs grpcio-tools")
    proto = tmp_path / "caffe.proto"
    proto.write_text(SEGNET)
    _check_segnet_net(read_net(NET, caffe_proto=proto))


# --------------------------------------------------------------------------- ceil_mode
# `ceil_mode: false` is round_mode FLOOR (geometry.pool_ceil): the values of FLOOR pooling
# are checked against BVLC Caffe by tests/layers/test_pooling.py (golden pooling-floor);
# here that golden is run again with ceil_mode in place of round_mode.

GOLDEN_FLOOR = Path(__file__).resolve().parents[1] / "golden" / "layers" / "pooling-floor.npz"


def _pool_net(params: str, size: int = 112) -> str:
    return ('input: "data" input_shape { dim: 1 dim: 2 dim: %d dim: %d }\n'
            'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool"\n'
            '  pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 %s } }\n'
            % (size, size, params))


def test_densenet121_pool1_floors_to_56x56():
    """DenseNet-121's pool1 (kernel 3, stride 2, pad 1 over 112x112) is 56x56 with its
    `ceil_mode: false`; Caffe's default CEIL would make it 57x57."""
    if not MODELS.is_dir():
        pytest.skip("../shared/models is absent")
    gm = caffe_fx.compile(MODELS / "shicai+DenseNet-Caffe/DenseNet_121.prototxt",
                          outputs=["pool1"])
    assert gm.meta["caffe"].blob_shapes["conv1"] == (1, 64, 112, 112)
    assert gm.meta["caffe"].blob_shapes["pool1"] == (1, 64, 56, 56)


@pytest.mark.parametrize("params, size", [("ceil_mode: false", 56), ("round_mode: FLOOR", 56),
                                          ("ceil_mode: false round_mode: FLOOR", 56),
                                          ("ceil_mode: true", 57), ("", 57),
                                          ("ceil_mode: true round_mode: CEIL", 57)])
def test_ceil_mode_is_round_mode(params, size):
    gm = caffe_fx.compile(_pool_net(params))
    assert gm.meta["caffe"].blob_shapes["pool"] == (1, 2, size, size)
    assert gm(data=torch.randn(1, 2, 112, 112))["pool"].shape == (1, 2, size, size)


@pytest.mark.parametrize("params", ["ceil_mode: false round_mode: CEIL",
                                    "ceil_mode: true round_mode: FLOOR"])
def test_ceil_mode_disagreeing_with_round_mode_is_refused(params):
    with pytest.raises(UnsupportedFieldError) as e:
        caffe_fx.compile(_pool_net(params))
    message = str(e.value)
    assert "layer 'pool' (Pooling)" in message and "disagree" in message
    assert "ceil_mode = %s" % params.split()[1] in message
    assert "round_mode = %s" % params.split()[3] in message
    assert "allowed:" in message


def test_ceil_mode_false_matches_caffes_floor_golden():
    with np.load(GOLDEN_FLOOR) as f:
        rec = dict(f)
    prototxt = str(rec["prototxt"])
    assert "round_mode: FLOOR" in prototxt
    gm = caffe_fx.compile(prototxt.replace("round_mode: FLOOR", "ceil_mode: false"),
                          outputs=["pool"])
    with torch.no_grad():
        ours = gm(data=torch.from_numpy(rec["input/data"]))["pool"].numpy()
    caffe = rec["data/pool"]
    assert ours.shape == caffe.shape == (1, 2, 4, 4)
    np.testing.assert_allclose(ours, caffe, rtol=0, atol=1e-5 * np.abs(caffe).max())
