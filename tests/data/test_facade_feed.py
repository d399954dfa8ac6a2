"""The pycaffe facade's data layers (caffe_fx/pycaffe/net.py over caffe_fx.data): each
forward() fills their tops with the next batch, as their Forward does in Caffe.

Goldens: tests/golden/data_feed (tools/make_data_feed_goldens.py), the batches real
pycaffe's forward() left in the data-layer blobs after caffe.set_random_seed and Net().
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import caffe_fx.pycaffe as caffe
from caffe_fx.errors import DataSourceError

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES = json.loads((GOLDEN / "data_feed" / "cases.json").read_text())


@pytest.fixture
def golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("data", "data_feed"):
        shutil.copytree(GOLDEN / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("case", ["lmdb_train_crop_mirror_mean_file", "window_warp",
                                  "image_train_shuffle_crop_mirror", "hdf5_shuffle"])
def test_forward_fills_data_blobs_as_caffe(golden: Path, case: str) -> None:
    c = CASES[case]
    with np.load(GOLDEN / "data_feed" / "batches.npz") as f:
        want = {k: f[k] for k in f.files if k.startswith(case + "/")}
    if c["seed"] is not None:
        caffe.set_random_seed(c["seed"])
    net = caffe.Net(f"data_feed/nets/{case}.prototxt",
                    caffe.TRAIN if c["phase"] == "train" else caffe.TEST)
    for i in range(c["forwards"]):
        out = net.forward()
        for top in c["tops"]:
            np.testing.assert_array_equal(net.blobs[top].data, want[f"{case}/{i}/{top}"])
            np.testing.assert_array_equal(out[top], want[f"{case}/{i}/{top}"])


def test_layers_after_the_data_read_the_batch(golden: Path) -> None:
    caffe.set_random_seed(1701)
    case = "lmdb_train_crop_mirror_mean_file"
    text = (GOLDEN / "data_feed" / "nets" / f"{case}.prototxt").read_text()
    Path("net.prototxt").write_text(
        text + 'layer { name: "sum" type: "Reduction" bottom: "data" top: "sum" }\n')
    net = caffe.Net("net.prototxt", caffe.TRAIN)
    with np.load(GOLDEN / "data_feed" / "batches.npz") as f:
        for i in range(2):
            net.forward()
            data = f[f"{case}/{i}/data"]
            np.testing.assert_allclose(net.blobs["sum"].data, data.sum(), rtol=1e-5)


def test_missing_source_fails_at_construction(golden: Path) -> None:
    Path("net.prototxt").write_text(
        'layer { name: "d" type: "ImageData" top: "data" top: "label" image_data_param { '
        'source: "nope.txt" batch_size: 1 } }\n')
    with pytest.raises(DataSourceError, match=r"image_data_param.source = 'nope.txt' cannot "
                       r"be opened"):
        caffe.Net("net.prototxt", caffe.TEST)
