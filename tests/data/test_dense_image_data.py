"""SegNet's DenseImageData (alexgkendall/caffe-segnet) against the fork run for real: its
set-up shapes (caffe_fx/data/top_shapes.py), its batches (caffe_fx/data/feed.py) element
for element, and a SegNet-like net end read through the pycaffe facade.

Goldens: tools/make_dense_image_data_goldens.py wrote tiny PPM/PGM/BMP/PNG images and
label maps into tests/golden/dense_image_data and recorded the fork's first batch of each
case (caffe.set_random_seed(1), Net(), forward()): colour and grey reads (a colour PPM
and BMP read grey by OpenCV's own formula, a PNG by libpng's), bilinear image and
nearest-neighbour label resizes, mean and scale on the image only, the list's wrap, and
shuffle, mirror, crop and rand_skip drawn from Caffe's stream as the fork draws them.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import caffe_fx
import caffe_fx.pycaffe as caffe
from caffe_fx.data import data_top_shapes, open_feed
from caffe_fx.errors import DataSourceError, NetDefinitionError, ShapeError
from caffe_fx.proto import caffe_pb2
from tests.golden.harness import relative_error

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "dense_image_data"
CASES = json.loads((GOLDEN / "cases.json").read_text())
PHASES = {"train": caffe_pb2.TRAIN, "test": caffe_pb2.TEST}


@pytest.fixture
def golden(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(GOLDEN)  # the nets' paths are relative to it; nothing is written
    return GOLDEN


@pytest.fixture(scope="module")
def batches() -> dict[str, np.ndarray]:
    with np.load(GOLDEN / "batches.npz") as f:
        return {k: f[k] for k in f.files}


def _net(case: str) -> caffe_pb2.NetParameter:
    return text_format.Parse((GOLDEN / "nets" / f"{case}.prototxt").read_text(),
                             caffe_pb2.NetParameter())


@pytest.mark.parametrize("case", sorted(CASES))
def test_batches_equal_the_forks(golden: Path, batches: dict, case: str) -> None:
    c = CASES[case]
    with open_feed(_net(case), phase=PHASES[c["phase"]], where=f"{case}.prototxt",
                   seed=c["seed"]) as feed:
        got = feed.next()
        for top in c["tops"]:
            want = batches[f"{case}/{top}"]
            assert got[top].dtype == np.float32
            assert got[top].shape == want.shape == feed.shapes[top], top
            np.testing.assert_array_equal(got[top], want, err_msg=f"{case}: {top}")


def test_set_up_shapes_and_compile_inputs(golden: Path) -> None:
    layer = _net("resize").layer[0]
    assert data_top_shapes(layer, "resize") == [(3, 3, 4, 9), (3, 1, 4, 9)]
    assert data_top_shapes(_net("crop").layer[0], "crop") == [(4, 3, 3, 4), (4, 1, 3, 4)]
    assert data_top_shapes(_net("gray").layer[0], "gray") == [(3, 1, 5, 7), (3, 1, 5, 7)]
    text = (GOLDEN / "nets" / "net_segnet_mini.prototxt").read_text()
    gm = caffe_fx.compile(text, phase="train")
    info = gm.meta["caffe"]
    assert info.inputs == ["data", "label"]
    assert (info.blob_shapes["data"], info.blob_shapes["label"]) == ((2, 3, 5, 7), (2, 1, 5, 7))
    assert info.blob_shapes["score"] == (2, 12, 5, 7)


def test_a_segnet_end_through_the_facade(golden: Path) -> None:
    """DenseImageData -> 1x1 Convolution -> class-weighted SoftmaxWithLoss, TRAIN, with the
    oracle's weights: the batch, the loss and every diff equal the fork's (1e-4)."""
    with np.load(GOLDEN / "net_segnet_mini.npz") as f:
        rec = {k: f[k] for k in f.files}
    caffe.set_random_seed(1)
    net = caffe.Net("nets/net_segnet_mini.prototxt", caffe.TRAIN)
    for i, blob in enumerate(net.params["score"]):
        blob.data[...] = rec[f"param/score/{i}"]
    net.forward()
    net.backward()
    for blob in ("data", "label", "score", "loss"):
        _close(net.blobs[blob].data, rec[f"data/{blob}"], f"data of {blob}")
    _close(net.blobs["score"].diff, rec["diff/score"], "diff of score")
    for i, blob in enumerate(net.params["score"]):
        _close(blob.diff, rec[f"pdiff/score/{i}"], f"diff of score param {i}")


def _close(ours: np.ndarray, caffe_: np.ndarray, what: str) -> None:
    assert np.shape(ours) == np.shape(caffe_), what
    err = relative_error(np.asarray(ours), np.asarray(caffe_))
    assert err <= 1e-4, f"{what} differs from the fork by {err:.3g} (relative)"


# ---------------------------------------------------------------- refused set-ups

def _layer(params: str, transform: str = "", source: str = "list.txt") -> caffe_pb2.LayerParameter:
    tp = f" transform_param {{ {transform} }}" if transform else ""
    return text_format.Parse(
        f'name: "d" type: "DenseImageData" top: "data" top: "label" dense_image_data_param '
        f'{{ source: "{source}" root_folder: "images/" batch_size: 2 {params} }}{tp}',
        caffe_pb2.LayerParameter())


@pytest.mark.parametrize("params, transform, match", [
    ("new_height: 4", "", r"new_height = 4 and new_width = 0; the fork requires both"),
    ("crop_width: 3", "", r"crop_height = 0 and crop_width = 3; the fork requires both"),
    ("", "mirror: true", r"transform_param.mirror = true, crop_size = 0: the fork aborts"),
    ("", "crop_size: 3", r"crop_size = 3: the fork aborts on them"),
    ('mean_file: "m.binaryproto"', "", r"dense_image_data_param.mean_file = 'm.binaryproto' "
                                       r"is never read"),
], ids=["new_height_alone", "crop_width_alone", "transform_mirror", "transform_crop",
        "dense_mean_file"])
def test_params_the_fork_refuses(golden: Path, params: str, transform: str,
                                 match: str) -> None:
    with pytest.raises(NetDefinitionError, match=r"layer 'd' \(DenseImageData\): .*" + match):
        data_top_shapes(_layer(params, transform), "net.prototxt")


def test_a_crop_larger_than_the_image_is_refused(golden: Path) -> None:
    with pytest.raises(ShapeError, match=r"crop_height = 6 and crop_width = 2 exceed the "
                                         r"first image's 5 x 7"):
        data_top_shapes(_layer("crop_height: 6 crop_width: 2"), "net.prototxt")


def test_a_label_of_another_size_is_refused(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(GOLDEN / "images", tmp_path / "images")
    (tmp_path / "bad.txt").write_text("img0.ppm lab0.pgm\nimg1.png small.pgm\n")
    (tmp_path / "images" / "small.pgm").write_bytes(b"P5\n2 2\n255\n\x00\x01\x02\x03")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "first.txt").write_text("img1.png small.pgm\n")
    with pytest.raises(ShapeError, match=r"is 5 x 7 but its label 2 x 2 \(height x width\)"):
        data_top_shapes(_layer("", source="first.txt"), "net.prototxt")
    net = caffe_pb2.NetParameter()
    net.layer.append(_layer("", source="bad.txt"))
    with open_feed(net, phase=caffe_pb2.TEST, where="net.prototxt", seed=1) as feed:
        with pytest.raises(ShapeError, match=r"the image 'images/img1.png' is 5 x 7 but its "
                                             r"label 'images/small.pgm' 2 x 2"):
            feed.next()


def test_a_missing_list_names_the_field(golden: Path) -> None:
    with pytest.raises(DataSourceError, match=r"dense_image_data_param.source = 'nope.txt' "
                                              r"cannot be opened"):
        data_top_shapes(_layer("", source="nope.txt"), "net.prototxt")


def test_the_set_up_checks_the_first_image_against_the_mean(golden: Path) -> None:
    """As ImageData's set-up: a mean_value count that fits no image of the first pair is
    refused when the feed opens, not at its first batch."""
    net = caffe_pb2.NetParameter()
    net.layer.append(_layer("", transform="mean_value: 1 mean_value: 2"))
    with pytest.raises(NetDefinitionError, match=r"layer 'd' \(DenseImageData\): "
                                                 r"transform_param has 2 mean_value"):
        open_feed(net, phase=caffe_pb2.TEST, where="net.prototxt", seed=1)


def test_the_batch_feeds_the_compiled_net(golden: Path, batches: dict) -> None:
    """compile() takes the data layer's tops as inputs; the feed's batch runs through it."""
    text = (GOLDEN / "nets" / "net_segnet_mini.prototxt").read_text()
    gm = caffe_fx.compile(text, phase="train")
    net = text_format.Parse(text, caffe_pb2.NetParameter())
    with open_feed(net, phase=caffe_pb2.TRAIN, where="net", seed=1) as feed:
        batch = feed.next()
    out = gm(**{k: torch.from_numpy(v) for k, v in batch.items()})
    assert out["loss"].shape == () and torch.isfinite(out["loss"])
