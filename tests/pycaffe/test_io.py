"""Tests of caffe_fx.pycaffe.io against what BVLC pycaffe's caffe.io computed.

Every expected value comes from tests/golden/pycaffe_io/, written by
tools/make_io_goldens.py with real pycaffe 1.0 (scikit-image 0.18, scipy 1.6) in the
reference chroot. Tolerances: protobuf bytes and integer results exact; arithmetic 1e-6;
resizes rtol 1e-6 (float32 rounding: we differ from skimage's Cython warp by at most 1 ulp,
6e-8 on [0, 1] images), and so 2 ulps of 255 after a resized image is scaled by 255.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from caffe_fx.errors import CaffeFxError, InputError, ShapeError, UnsupportedFieldError
from caffe_fx.proto import caffe_pb2
from caffe_fx.pycaffe import io as cio

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pycaffe_io"
INS = dict(np.load(GOLDEN / "inputs.npz"))
OUTS = dict(np.load(GOLDEN / "outputs.npz"))
ERRORS = json.loads((GOLDEN / "errors.json").read_text())
SHAPE = (2, 3, 5, 6)  # the blob shape of every golden Transformer's 'data' input
RESIZED_ATOL = 2 * float(np.spacing(np.float32(255)))  # 2 float32 ulps of 255


def _proto_bytes(key: str) -> bytes:
    return OUTS[key].tobytes()


def _assert_close(
    ours: np.ndarray, ref: np.ndarray, rtol: float = 1e-6, atol: float = 1e-6
) -> None:
    assert ours.shape == ref.shape
    assert ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=atol)


# ---- protobuf conversions ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("key", "arr", "diff"),
    [
        ("array_to_blobproto", "blob_a", None),
        ("array_to_blobproto_diff", "blob_a", "blob_d"),
        ("array_to_blobproto_int", "blob_int", None),
    ],
    ids=["data", "data_and_diff", "int64"],
)
def test_array_to_blobproto_bytes_match(key: str, arr: str, diff: str | None) -> None:
    blob = cio.array_to_blobproto(INS[arr], None if diff is None else INS[diff])
    assert blob.SerializeToString() == _proto_bytes(key)


@pytest.mark.parametrize("return_diff", [False, True], ids=["data", "diff"])
def test_blobproto_to_array_legacy_4d(return_diff: bool) -> None:
    blob = caffe_pb2.BlobProto.FromString(INS["blob_legacy"].tobytes())
    ours = cio.blobproto_to_array(blob, return_diff=return_diff)
    ref = OUTS["blobproto_to_array_legacy" + ("_diff" if return_diff else "")]
    assert ours.shape == (1, 2, 3, 2)
    np.testing.assert_array_equal(ours, ref)
    assert ours.dtype == ref.dtype == np.float64


@pytest.mark.parametrize("return_diff", [False, True], ids=["data", "diff"])
def test_blobproto_to_array_shape_field(return_diff: bool) -> None:
    blob = caffe_pb2.BlobProto.FromString(_proto_bytes("array_to_blobproto_diff"))
    ours = cio.blobproto_to_array(blob, return_diff=return_diff)
    ref = OUTS["blobproto_to_array_shape" + ("_diff" if return_diff else "")]
    np.testing.assert_array_equal(ours, ref)
    assert ours.dtype == ref.dtype


def test_blobprotovector_round_trip() -> None:
    arrays = [INS["vec_0"], INS["vec_1"]]
    s = cio.arraylist_to_blobprotovector_str(arrays)
    assert s == _proto_bytes("arraylist_to_blobprotovector_str")
    back = cio.blobprotovector_str_to_arraylist(s)
    assert len(back) == 2
    for i, arr in enumerate(back):
        ref = OUTS[f"blobprotovector_str_to_arraylist_{i}"]
        np.testing.assert_array_equal(arr, ref)
        assert arr.dtype == ref.dtype


@pytest.mark.parametrize(("kind", "label"), [("u8", 7), ("f", None)], ids=["uint8", "float"])
def test_datum_round_trip(kind: str, label: int | None) -> None:
    datum = cio.array_to_datum(INS[f"datum_{kind}"], label=label)
    assert datum.SerializeToString() == _proto_bytes(f"array_to_datum_{kind}")
    ours = cio.datum_to_array(datum)
    ref = OUTS[f"datum_to_array_{kind}"]
    np.testing.assert_array_equal(ours, ref)
    assert ours.dtype == ref.dtype


def test_array_to_datum_rejects_2d() -> None:
    assert ERRORS["array_to_datum_2d"][0] == "ValueError"
    with pytest.raises(ShapeError, match=r"shape \(2, 3\) has 2 axes; a Datum holds exactly 3"):
        cio.array_to_datum(np.zeros((2, 3)))


# ---- resize_image and oversample ---------------------------------------------------------

RESIZE_CASES = sorted(
    k[len("resize_"):] for k in INS if k.startswith("resize_") and not k.endswith("_dims")
)


@pytest.mark.parametrize("case", RESIZE_CASES)
def test_resize_image(case: str) -> None:
    # resize_order<N>_<case>: interp_order N; the others pycaffe's default, 1.
    order = int(case[len("order")]) if case.startswith("order") else 1
    im = INS["resize_" + case]
    dims = tuple(int(d) for d in INS["resize_" + case + "_dims"])
    ours = cio.resize_image(im, dims, interp_order=order)
    assert ours.dtype == np.float32
    _assert_close(ours, OUTS["resize_" + case])


def test_resize_image_orders_cover_nearest_and_cubic() -> None:
    assert {c.split("_")[0] for c in RESIZE_CASES if c.startswith("order")} == {"order0",
                                                                                 "order3"}


@pytest.mark.parametrize(("channels", "order"), [(3, 2), (1, 4), (3, 5), (2, 3), (4, 3)])
def test_resize_image_refuses_the_orders_pycaffe_hands_to_scipys_splines(
        channels: int, order: int) -> None:
    with pytest.raises(UnsupportedFieldError, match=(
            rf"interp_order = {order} for an image of {channels} channel\(s\) is not "
            r"supported \(pycaffe computes it with scipy's spline interpolation")):
        cio.resize_image(np.zeros((2, 2, channels)), (3, 3), interp_order=order)


@pytest.mark.parametrize(
    ("key", "inputs", "crop"),
    [
        ("oversample_even", ["oversample_0", "oversample_1"], (4, 4)),
        ("oversample_odd", ["oversample_0", "oversample_1"], (3, 5)),
        ("oversample_gray", ["oversample_gray"], (6, 6)),
    ],
    ids=["even_crop", "odd_crop", "full_size_gray"],
)
def test_oversample(key: str, inputs: list[str], crop: tuple[int, int]) -> None:
    ours = cio.oversample([INS[k] for k in inputs], crop)
    np.testing.assert_array_equal(ours, OUTS[key])
    assert ours.dtype == np.float32


# ---- Transformer ---------------------------------------------------------------------------

def _caffenet_like(mean: np.ndarray) -> cio.Transformer:
    t = cio.Transformer({"data": SHAPE})
    t.set_transpose("data", (2, 0, 1))
    t.set_channel_swap("data", (2, 1, 0))
    t.set_raw_scale("data", 255.0)
    t.set_mean("data", mean)
    return t


def _input_scale() -> cio.Transformer:
    # Shapes as lists and a numpy shape tuple: any mapping {name: shape} works.
    t = cio.Transformer({"data": list(SHAPE), "gray": np.zeros((1, 1, 5, 6)).shape})
    t.set_transpose("data", (2, 0, 1))
    t.set_input_scale("data", 0.017)
    t.set_mean("data", INS["tf_mean_c"])
    t.set_raw_scale("data", 255)
    t.set_transpose("gray", (2, 0, 1))
    t.set_mean("gray", INS["tf_mean_2d"])
    return t


def _transpose_only() -> cio.Transformer:
    t = cio.Transformer({"data": SHAPE})
    t.set_transpose("data", [2, 0, 1])
    return t


TRANSFORMERS = {
    "caffenet_channel_mean": lambda: _caffenet_like(INS["tf_mean_c"]),
    "caffenet_full_mean": lambda: _caffenet_like(INS["tf_mean_full"]),
    "caffenet_resized_mean": lambda: _caffenet_like(INS["tf_mean_big"]),
    "input_scale": _input_scale,
    "transpose_only": _transpose_only,
}


@pytest.mark.parametrize("config", sorted(TRANSFORMERS))
def test_transformer_mean(config: str) -> None:
    t = TRANSFORMERS[config]()
    ref = OUTS[f"tf_{config}_mean"]
    if ref.size == 0:
        assert "data" not in t.mean
    else:
        _assert_close(np.asarray(t.mean["data"]), ref)


@pytest.mark.parametrize("src", ["img", "img_other"], ids=["same_size", "resized"])
@pytest.mark.parametrize("config", sorted(TRANSFORMERS))
def test_transformer_preprocess_deprocess(config: str, src: str) -> None:
    t = TRANSFORMERS[config]()
    image = INS["tf_" + src]
    before = image.copy()
    pre = t.preprocess("data", image)
    np.testing.assert_array_equal(image, before)  # the caller's array is left alone
    # A resized image may be 1 float32 ulp off before `* 255 - mean` (up to 1.5e-5 there).
    atol = RESIZED_ATOL if src == "img_other" else 1e-6
    _assert_close(pre, OUTS[f"tf_{config}_{src}_pre"], atol=atol)
    _assert_close(t.deprocess("data", pre), OUTS[f"tf_{config}_{src}_de"], atol=atol)


def test_transformer_gray_2d_mean() -> None:
    t = _input_scale()
    _assert_close(np.asarray(t.mean["gray"]), OUTS["tf_gray_mean"])
    pre = t.preprocess("gray", INS["tf_gray_img"])
    _assert_close(pre, OUTS["tf_gray_pre"])


def test_transformer_gray_deprocess_keeps_channel_axis() -> None:
    # pycaffe squeezes the channel away and then fails; we give (H, W, 1) back.
    assert ERRORS["tf_gray_de"] == ["ValueError", "axes don't match array"]
    t = _input_scale()
    back = t.deprocess("gray", OUTS["tf_gray_pre"])
    np.testing.assert_allclose(back, INS["tf_gray_img"], rtol=1e-5, atol=1e-5)
    assert back.shape == (5, 6, 1)


def test_transformer_resizes_a_mean_of_other_size_2d() -> None:
    # A (H', W') mean makes pycaffe fail; it is read as (1, H', W') and resized.
    t = cio.Transformer({"data": SHAPE})
    mean = INS["tf_mean_big"][0]
    t.set_mean("data", mean)
    expected = cio.resize_image(
        ((mean - mean.min()) / (mean.max() - mean.min()))[:, :, None], (5, 6)
    ).transpose(2, 0, 1) * np.float32(mean.max() - mean.min()) + np.float32(mean.min())
    np.testing.assert_allclose(t.mean["data"], expected, rtol=1e-6)
    assert t.mean["data"].shape == (1, 5, 6)


@pytest.mark.parametrize(
    ("case", "call", "error", "match"),
    [
        pytest.param(
            "tf_unknown_input", lambda t: t.set_raw_scale("label", 1.0), InputError,
            r"'label' is not one of the net inputs; inputs: 'data' \(2, 3, 5, 6\)",
            id="unknown_input",
        ),
        pytest.param(
            "tf_preprocess_unknown", lambda t: t.preprocess("label", np.zeros((5, 6, 3))),
            InputError, "'label' is not one of the net inputs", id="preprocess_unknown",
        ),
        pytest.param(
            "tf_transpose_len", lambda t: t.set_transpose("data", (1, 0)), InputError,
            "Transpose order needs to have the same number of dimensions as the input: 3",
            id="transpose_len",
        ),
        pytest.param(
            "tf_channel_swap_len", lambda t: t.set_channel_swap("data", (1, 0)), InputError,
            "Channel swap needs to have the same number of dimensions as the input channels: 3",
            id="channel_swap_len",
        ),
        pytest.param(
            "tf_mean_channels", lambda t: t.set_mean("data", np.zeros(4)), ShapeError,
            "Mean channels incompatible with input: mean has 4 values, .* has 3 channels",
            id="mean_channels",
        ),
        pytest.param(
            "tf_mean_ndim", lambda t: t.set_mean("data", np.zeros((1, 3, 5, 6))), ShapeError,
            r"Mean shape invalid: \(1, 3, 5, 6\); allowed: \(3,\), \(H, W\)",
            id="mean_ndim",
        ),
    ],
)
def test_transformer_errors(case: str, call, error: type, match: str) -> None:
    pycaffe_class, _ = ERRORS[case]
    with pytest.raises(error, match=match) as info:
        call(cio.Transformer({"data": SHAPE}))
    assert isinstance(info.value, CaffeFxError)
    # Code that caught pycaffe's exception still catches ours.
    assert isinstance(info.value, {"Exception": Exception, "ValueError": ValueError}[pycaffe_class])


def test_transformer_rejects_mean_with_other_channel_count() -> None:
    t = cio.Transformer({"data": SHAPE})
    with pytest.raises(ShapeError, match=r"Mean shape invalid: \(2, 5, 6\)"):
        t.set_mean("data", np.zeros((2, 5, 6)))


# ---- load_image ------------------------------------------------------------------------------

@pytest.mark.parametrize("color", [True, False], ids=["color", "gray"])
@pytest.mark.parametrize("fname", ["rgb.png", "gray.png", "rgba.png", "rgb.jpg"])
def test_load_image(fname: str, color: bool) -> None:
    pytest.importorskip("PIL", reason="load_image needs Pillow (pip install pillow)")
    # Goldens: the body of caffe.io.load_image with skimage 0.18's `as_gray` spelling;
    # the chroot's caffe.io.load_image itself raises on the removed `as_grey` keyword.
    assert ERRORS["load_image_" + fname.replace(".", "_")][0] == "TypeError"
    ours = cio.load_image(GOLDEN / "images" / fname, color=color)
    ref = OUTS[f"load_{fname.replace('.', '_')}_{'color' if color else 'gray'}"]
    _assert_close(ours, ref)


def test_load_image_without_pillow_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    with pytest.raises(ImportError, match="pip install pillow"):
        cio.load_image(GOLDEN / "images" / "rgb.png")


# ---- arguments pycaffe fails on deep inside (numpy or protobuf errors there) --------------

@pytest.mark.parametrize("dims", [(0, 3), (-2, 3), (2.5, 3), 5, (4,), (1, 2, 3), ("a", 3)])
def test_resize_image_refuses_dims_that_are_not_two_positive_whole_numbers(dims) -> None:
    with pytest.raises(ShapeError, match=r"resize_image: new_dims = .*; allowed: \(height, "
                                         r"width\), two positive whole numbers"):
        cio.resize_image(np.zeros((4, 4, 3), np.float32), dims)


def test_resize_image_takes_whole_floats_and_numpy_ints_as_pycaffe_does() -> None:
    im = INS["resize_up_rgb"]
    dims = tuple(int(d) for d in INS["resize_up_rgb_dims"])
    spelled = (float(dims[0]), np.int64(dims[1]))
    _assert_close(cio.resize_image(im, spelled), OUTS["resize_up_rgb"])


def test_blobproto_to_array_names_what_it_was_given() -> None:
    with pytest.raises(InputError, match=r"given bytes \(a file's contents\?\), not a "
                                         r"BlobProto; parse them first"):
        cio.blobproto_to_array(b"\x08\x01")
    with pytest.raises(InputError, match=r"given Datum; allowed: a caffe_pb2.BlobProto"):
        cio.blobproto_to_array(caffe_pb2.Datum())
    with pytest.raises(ShapeError, match=r"the blob's diff holds 0 values; its shape "
                                         r"\[1, 2, 2, 2\] needs 8"):
        cio.blobproto_to_array(caffe_pb2.BlobProto(num=1, channels=2, height=2, width=2,
                                                   data=[0.0] * 8), return_diff=True)
