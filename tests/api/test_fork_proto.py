"""compile(..., caffe_proto=PATH): fork prototxts parse with the fork's own schema."""
import pytest

import caffe_fx
from caffe_fx.errors import ProtoError, ProtoParseError, UnsupportedLayerError

# A minimal fork schema in the style of Fast R-CNN's: BVLC's NetParameter/LayerParameter
# subset plus a fork field (roi_pooling_param = 8266711, Fast R-CNN's number).
FORK = """
syntax = "proto2";
package caffe;
message BlobShape { repeated int64 dim = 1 [packed = true]; }
message InputParameter { repeated BlobShape shape = 1; }
message ROIPoolingParameter {
  optional uint32 pooled_h = 1 [default = 0];
  optional uint32 pooled_w = 2 [default = 0];
  optional float spatial_scale = 3 [default = 1];
}
message LayerParameter {
  optional string name = 1;
  optional string type = 2;
  repeated string bottom = 3;
  repeated string top = 4;
  optional InputParameter input_param = 143;
  optional ROIPoolingParameter roi_pooling_param = 8266711;
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
"""


def test_fork_fields_need_the_fork_schema():
    with pytest.raises(ProtoParseError, match=r"roi_pooling_param"):
        caffe_fx.compile(NET)


def test_fork_schema_parses_and_reports_fork_layers(tmp_path):
    pytest.importorskip("grpc_tools", reason="compiling a .proto needs grpcio-tools")
    proto = tmp_path / "caffe.proto"
    proto.write_text(FORK)
    with pytest.raises(UnsupportedLayerError, match=r"layer 'roi_pool5' \(type: ROIPooling\)"):
        caffe_fx.compile(NET, caffe_proto=proto)
    gm = caffe_fx.compile(NET, caffe_proto=proto, outputs=["relu"])
    assert [n.name for n in gm.graph.nodes] == ["data", "rois", "relu", "output"]


def test_missing_fork_schema(tmp_path):
    with pytest.raises(ProtoError, match=r"no such \.proto file"):
        caffe_fx.compile(NET, caffe_proto=tmp_path / "absent.proto")
