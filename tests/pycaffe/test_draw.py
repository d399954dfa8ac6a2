"""caffe.draw: pycaffe's drawing functions as thin wrappers over caffe_fx.drawing (the
chroot's pycaffe has no pydot, so there is no real-pycaffe drawing to compare)."""
from __future__ import annotations

from pathlib import Path

import pytest

from caffe_fx import drawing
from caffe_fx.errors import PycaffeNotImplementedError
from caffe_fx.frontend.read import read_net
from caffe_fx.pycaffe import TEST, draw

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pycaffe_misc"
NET = read_net(GOLDEN / "tiny.prototxt")


def test_draw_net_raw_is_the_dot_text() -> None:
    got = draw.draw_net(NET, "TB", ext="raw", phase=TEST).decode()
    assert got == drawing.net_to_dot(NET, phase="test", rankdir="TB")
    assert '"acc"' in got


def test_draw_net_to_file(tmp_path: Path) -> None:
    out = tmp_path / "net.dot"
    draw.draw_net_to_file(NET, str(out), rankdir="LR")
    assert out.read_text() == drawing.net_to_dot(NET, rankdir="LR")


def test_helpers() -> None:
    conv = NET.layer[1]
    assert draw.get_edge_label(conv) == "2"
    assert draw.get_edge_label(NET.layer[2]) == '""'
    assert draw.get_layer_lr_mult(conv) == (1.0, 1.0)
    assert draw.get_layer_label(conv, "TB") == \
        '"conv1 (Convolution) kernel size: 3 stride: 1 pad: 0"'
    assert draw.choose_color_by_layertype("Pooling") == "#FF9900"
    assert draw.get_pooling_types_dict()[0] == "MAX"
    with pytest.raises(ValueError, match="ReLU layers do not have a learning rate"):
        draw.get_layer_lr_mult(NET.layer[2])


def test_display_lrm_is_refused() -> None:
    with pytest.raises(PycaffeNotImplementedError, match="display_lrm"):
        draw.draw_net(NET, "LR", ext="raw", display_lrm=True)
