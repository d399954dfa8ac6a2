"""caffe.Classifier and caffe.Detector against real pycaffe's predictions
(tests/golden/pycaffe_misc, tools/make_pycaffe_misc_goldens.py)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import caffe_fx.pycaffe as caffe
from caffe_fx.errors import MissingDependencyError

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pycaffe_misc"
OUT = np.load(GOLDEN / "outputs.npz")
NET, WEIGHTS = str(GOLDEN / "classifier.prototxt"), str(GOLDEN / "weights.caffemodel")
IMAGES = [OUT[f"image_{i}"] for i in range(3)]


@pytest.fixture(scope="module")
def plain() -> caffe.Classifier:
    return caffe.Classifier(NET, WEIGHTS)


@pytest.fixture(scope="module")
def full() -> caffe.Classifier:
    return caffe.Classifier(NET, WEIGHTS, image_dims=(8, 9), mean=OUT["mean"], input_scale=0.5,
                            raw_scale=2.0, channel_swap=(2, 1, 0))


@pytest.mark.parametrize("oversample", [True, False], ids=["oversample", "center"])
def test_classifier_plain(plain: caffe.Classifier, oversample: bool) -> None:
    got = plain.predict(IMAGES[:2], oversample=oversample)
    want = OUT["classify_plain_oversample" if oversample else "classify_plain_center"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("oversample", [True, False], ids=["oversample", "center"])
def test_classifier_all_options(full: caffe.Classifier, oversample: bool) -> None:
    got = full.predict(IMAGES, oversample=oversample)
    want = OUT["classify_full_oversample" if oversample else "classify_full_center"]
    assert got.shape == want.shape == (3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_detect_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)
    det = caffe.Detector(NET, WEIGHTS, mean=OUT["mean"], raw_scale=255.0, channel_swap=(2, 1, 0))
    windows = [("images/det0.png", np.array([[0, 0, 6, 7], [3, 2, 12, 14]])),
               ("images/det1.png", np.array([[1, 1, 8, 9]]))]
    found = det.detect_windows(windows)
    order = np.array([[int(d["filename"][-5]), *d["window"]] for d in found])
    np.testing.assert_array_equal(order, OUT["detect_windows_order"])
    np.testing.assert_allclose(np.stack([d["prediction"] for d in found]),
                               OUT["detect_windows"], rtol=1e-5, atol=1e-6)


def test_context_pad_crop_fills_mean() -> None:
    # pycaffe's own context crop raises TypeError under Python 3 (errors.json); ours
    # returns the full-size crop, mean-filled where the context leaves the image.
    assert json.loads((GOLDEN / "errors.json").read_text())["detect_context_pad"][0] == \
        "TypeError"
    det = caffe.Detector(NET, WEIGHTS, context_pad=1)
    crop = det.crop(np.ones((12, 14, 3), np.float32), np.array([0, 0, 6, 7]))
    assert crop.shape == (6, 6, 3)
    assert crop[0].max() == 0.0 and crop[-1, -1].min() == 1.0


def test_selective_search_needs_package() -> None:
    det = caffe.Detector(NET, WEIGHTS)
    with pytest.raises(MissingDependencyError, match="selective_search_ijcv_with_python"):
        det.detect_selective_search(["x.jpg"])
