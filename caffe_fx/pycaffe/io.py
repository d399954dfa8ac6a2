"""caffe.io for caffe_fx.pycaffe: image loading, resizing, the input Transformer, and
BlobProto/Datum <-> ndarray conversion.

Mirrors BVLC pycaffe's python/caffe/io.py. Where that file calls scikit-image (resize,
imread) or scipy (zoom), the same arithmetic is reimplemented here in numpy (scikit-image
0.18's anti-aliased bilinear `resize(mode='constant')`, scipy 1.6's `ndimage.zoom`);
decoding image files needs Pillow, imported only when an image is loaded.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InputError, ShapeError, UnsupportedFieldError
from ..proto import caffe_pb2

__all__ = [
    "Transformer",
    "array_to_blobproto",
    "array_to_datum",
    "arraylist_to_blobprotovector_str",
    "blobproto_to_array",
    "blobprotovector_str_to_arraylist",
    "datum_to_array",
    "load_image",
    "oversample",
    "resize_image",
]

# scikit-image's rgb2gray weights (ITU-R BT.709 luma), as skimage.io.imread(as_gray=True).
_GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])
_GAUSSIAN_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default radius, in sigmas


# ---- proto / datum / ndarray conversion -------------------------------------------------

def blobproto_to_array(blob: caffe_pb2.BlobProto, return_diff: bool = False) -> np.ndarray:
    """The data (or diff) of a BlobProto as a float64 array of the blob's shape.

    Blobs that set any of the legacy num/channels/height/width fields are read as 4-D.
    """
    if isinstance(blob, (bytes, bytearray, memoryview)):
        raise InputError("blobproto_to_array: given bytes (a file's contents?), not a "
                         "BlobProto; parse them first: blob = caffe.proto.caffe_pb2.BlobProto(); "
                         "blob.ParseFromString(data)")
    descriptor = getattr(blob, "DESCRIPTOR", None)
    if getattr(descriptor, "full_name", None) != "caffe.BlobProto":
        raise InputError(f"blobproto_to_array: given {type(blob).__name__}; allowed: a "
                         "caffe_pb2.BlobProto")
    data = np.array(blob.diff if return_diff else blob.data, dtype=np.float64)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    if data.size != math.prod(shape):
        raise ShapeError(f"blobproto_to_array: the blob's {'diff' if return_diff else 'data'} "
                         f"holds {data.size} values; its shape {list(shape)} needs "
                         f"{math.prod(shape)}")
    return data.reshape(shape)


def array_to_blobproto(arr: np.ndarray, diff: np.ndarray | None = None) -> caffe_pb2.BlobProto:
    """A BlobProto with `shape.dim` and `data` (and `diff`) from N-D arrays.

    As in pycaffe, `diff` is not checked against the shape of `arr`.
    """
    arr = np.asarray(arr)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend(int(d) for d in arr.shape)
    blob.data.extend(arr.astype(np.float64).ravel().tolist())
    if diff is not None:
        blob.diff.extend(np.asarray(diff).astype(np.float64).ravel().tolist())
    return blob


def arraylist_to_blobprotovector_str(arraylist: Sequence[np.ndarray]) -> bytes:
    """A serialized BlobProtoVector holding one blob per array."""
    vec = caffe_pb2.BlobProtoVector()
    vec.blobs.extend(array_to_blobproto(arr) for arr in arraylist)
    return vec.SerializeToString()


# The parameter keeps pycaffe's name, shadowing the builtin, so keyword calls still work.
def blobprotovector_str_to_arraylist(str: bytes) -> list[np.ndarray]:
    """The arrays of a serialized BlobProtoVector."""
    vec = caffe_pb2.BlobProtoVector()
    vec.ParseFromString(str)
    return [blobproto_to_array(blob) for blob in vec.blobs]


def array_to_datum(arr: np.ndarray, label: int | None = None) -> caffe_pb2.Datum:
    """A Datum from a (C, H, W) array: uint8 arrays as `data` bytes, others as `float_data`."""
    arr = np.asarray(arr)
    if arr.ndim != 3:
        raise ShapeError(
            f"array_to_datum: array of shape {arr.shape} has {arr.ndim} axes; "
            "a Datum holds exactly 3 (channels, height, width)"
        )
    datum = caffe_pb2.Datum()
    datum.channels, datum.height, datum.width = (int(d) for d in arr.shape)
    if arr.dtype == np.uint8:
        datum.data = arr.tobytes()
    else:
        datum.float_data.extend(arr.astype(np.float64).ravel().tolist())
    if label is not None:
        datum.label = label
    return datum


def datum_to_array(datum: caffe_pb2.Datum) -> np.ndarray:
    """The (C, H, W) array of a Datum: uint8 from `data` if present, else float64.

    The label is not returned; read `datum.label`.
    """
    shape = (datum.channels, datum.height, datum.width)
    if len(datum.data):
        return np.frombuffer(datum.data, dtype=np.uint8).reshape(shape).copy()
    return np.array(datum.float_data, dtype=np.float64).reshape(shape)


# ---- pre-processing ----------------------------------------------------------------------

def _like(value: Any, arr: np.ndarray) -> Any:
    """A scalar operand as numpy 1.x (pycaffe's era) applied it to `arr`: in arr's dtype.

    NumPy >= 2 would compute `float32_array * np.float64(s)` in float64; numpy 1.x's
    value-based casting (what pycaffe's numbers come from) used float32.
    """
    if np.ndim(value) == 0 and arr.dtype.kind == "f":
        scalar = np.asarray(value)
        if scalar.dtype.kind in "biuf" and abs(float(scalar)) < np.finfo(arr.dtype).max:
            return scalar.astype(arr.dtype)[()]
    return value


class Transformer:
    """Turns H x W x K images into a net's input blobs (and back), as pycaffe's Transformer.

    `inputs` maps each input name to its blob shape (N, C, H, W), e.g.
    `{'data': net.blobs['data'].data.shape}`. The per-input settings live in the dicts
    `transpose`, `channel_swap`, `raw_scale`, `mean` and `input_scale`.
    """

    def __init__(self, inputs: Mapping[str, Sequence[int]]):
        self.inputs: dict[str, tuple[int, ...]] = {
            name: tuple(int(d) for d in shape) for name, shape in inputs.items()
        }
        self.transpose: dict[str, tuple[int, ...]] = {}
        self.channel_swap: dict[str, tuple[int, ...]] = {}
        self.raw_scale: dict[str, Any] = {}
        self.mean: dict[str, np.ndarray] = {}
        self.input_scale: dict[str, Any] = {}

    def _check_input(self, in_: str) -> tuple[int, ...]:
        if in_ not in self.inputs:
            raise InputError(
                f"Transformer: {in_!r} is not one of the net inputs; inputs: "
                f"{', '.join(f'{k!r} {v}' for k, v in self.inputs.items()) or 'none'}"
            )
        return self.inputs[in_]

    def preprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """An H' x W' x K image as a float32 K x H x W input for blob `in_`.

        Steps, in pycaffe's order: resize to the blob's (H, W) if needed, transpose,
        channel swap, `*= raw_scale`, `-= mean`, `*= input_scale`. Unlike pycaffe (which
        can scale a float32 caller's array in place), `data` is never modified.
        """
        shape = self._check_input(in_)
        caffe_in = np.array(data, dtype=np.float32, copy=True)
        in_dims = shape[2:]
        if caffe_in.shape[:2] != in_dims:
            caffe_in = resize_image(caffe_in, in_dims)
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        if transpose is not None:
            caffe_in = caffe_in.transpose(transpose)
        if channel_swap is not None:
            caffe_in = caffe_in[np.asarray(channel_swap), :, :]
        caffe_in = np.ascontiguousarray(caffe_in)
        if raw_scale is not None:
            caffe_in *= _like(raw_scale, caffe_in)
        if mean is not None:
            caffe_in -= mean
        if input_scale is not None:
            caffe_in *= _like(input_scale, caffe_in)
        return caffe_in

    def deprocess(self, in_: str, data: np.ndarray) -> np.ndarray:
        """Undoes preprocess() (except the resize): K x H x W (or 1 x K x H x W) to H x W x K.

        Like pycaffe, singleton axes are squeezed first; unlike pycaffe, a 1-channel input
        is then given its channel axis back, so that the transpose can be inverted (pycaffe
        raises "axes don't match array" there).
        """
        shape = self._check_input(in_)
        decaf_in = np.array(data, copy=True).squeeze()
        transpose = self.transpose.get(in_)
        channel_swap = self.channel_swap.get(in_)
        raw_scale = self.raw_scale.get(in_)
        mean = self.mean.get(in_)
        input_scale = self.input_scale.get(in_)
        blob_shape = shape[1:]
        needed = len(transpose) if transpose is not None else (3 if channel_swap else 0)
        if decaf_in.ndim < needed and decaf_in.size == math.prod(blob_shape):
            decaf_in = decaf_in.reshape(blob_shape)
        if input_scale is not None:
            decaf_in /= _like(input_scale, decaf_in)
        if mean is not None:
            decaf_in += mean
        if raw_scale is not None:
            decaf_in /= _like(raw_scale, decaf_in)
        if channel_swap is not None:
            decaf_in = decaf_in[np.argsort(channel_swap), :, :]
        if transpose is not None:
            decaf_in = decaf_in.transpose(np.argsort(transpose))
        return decaf_in

    def set_transpose(self, in_: str, order: Sequence[int]) -> None:
        """Axis order applied to the image, e.g. (2, 0, 1) turns H x W x C into C x H x W."""
        shape = self._check_input(in_)
        if len(order) != len(shape) - 1:
            raise InputError(
                f"Transformer.set_transpose({in_!r}, {tuple(order)}): Transpose order needs "
                f"to have the same number of dimensions as the input: {len(shape) - 1} "
                f"for blob shape {shape}"
            )
        self.transpose[in_] = tuple(int(i) for i in order)

    def set_channel_swap(self, in_: str, order: Sequence[int]) -> None:
        """Channel order taken after the transpose, e.g. (2, 1, 0) turns RGB into BGR."""
        shape = self._check_input(in_)
        if len(order) != shape[1]:
            raise InputError(
                f"Transformer.set_channel_swap({in_!r}, {tuple(order)}): Channel swap needs "
                f"to have the same number of dimensions as the input channels: {shape[1]} "
                f"for blob shape {shape}"
            )
        self.channel_swap[in_] = tuple(int(i) for i in order)

    def set_raw_scale(self, in_: str, scale: Any) -> None:
        """Factor applied before the mean, e.g. 255 for nets trained on [0, 255] pixels."""
        self._check_input(in_)
        self.raw_scale[in_] = scale

    def set_mean(self, in_: str, mean: np.ndarray) -> None:
        """Mean to subtract: per channel (C,), or elementwise (C, H, W) / (H, W).

        An elementwise mean of another height and width is resized to the blob's (after
        min-max normalisation, as pycaffe does).
        """
        shape = self._check_input(in_)
        mean = np.asarray(mean)
        if mean.ndim == 1:
            if mean.shape[0] != shape[1]:
                raise ShapeError(
                    f"Transformer.set_mean({in_!r}): Mean channels incompatible with input: "
                    f"mean has {mean.shape[0]} values, blob shape {shape} has {shape[1]} "
                    "channels"
                )
            mean = mean[:, np.newaxis, np.newaxis]
        else:
            ms = mean.shape
            if mean.ndim == 2:
                ms = (1,) + ms
            if len(ms) != 3 or ms[0] not in (1, shape[1]):
                raise ShapeError(
                    f"Transformer.set_mean({in_!r}): Mean shape invalid: {mean.shape}; "
                    f"allowed: ({shape[1]},), (H, W), (1, H, W) or ({shape[1]}, H, W) "
                    f"for blob shape {shape}"
                )
            if ms != shape[1:]:
                # pycaffe would fail here on a 2-D mean; it is treated as (1, H, W).
                mean3 = mean.reshape(ms)
                m_min, m_max = mean3.min(), mean3.max()
                normal = (mean3 - m_min) / (m_max - m_min)
                resized = resize_image(normal.transpose((1, 2, 0)), shape[2:])
                resized = resized.transpose((2, 0, 1))
                mean = resized * _like(m_max - m_min, resized) + _like(m_min, resized)
        self.mean[in_] = mean

    def set_input_scale(self, in_: str, scale: Any) -> None:
        """Factor applied after the mean subtraction (raw_scale is applied before it)."""
        self._check_input(in_)
        self.input_scale[in_] = scale


# ---- image IO ----------------------------------------------------------------------------

def _read_image(filename: str | os.PathLike[str], as_gray: bool) -> np.ndarray:
    """skimage.io.imread(filename, as_gray=...) followed by img_as_float, via Pillow."""
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(
            "caffe_fx.pycaffe.io.load_image needs Pillow to decode images: pip install pillow"
        ) from e
    with Image.open(filename) as img:
        # Modes as imageio's Pillow plugin (what skimage.io.imread used) hands them over.
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif img.mode in ("LA", "PA", "La"):
            img = img.convert("RGBA")
        elif img.mode == "1":
            img = img.convert("L")
        elif img.mode not in ("L", "RGB", "RGBA", "I", "F") and not img.mode.startswith("I;16"):
            img = img.convert("RGB")
        arr = np.array(img)
    if arr.dtype == np.uint8:
        arr = arr / 255.0
    elif arr.dtype.kind in "ui":
        # 16-bit images (Pillow's 'I;16' or 'I'), scaled as skimage does for uint16.
        arr = arr.astype(np.float64) / 65535.0
    else:
        arr = arr.astype(np.float64)
    if as_gray and arr.ndim == 3:
        if arr.shape[2] == 4:
            # skimage's rgba2rgb: composite over a white background.
            alpha = arr[:, :, 3:]
            arr = np.clip((1 - alpha) + alpha * arr[:, :, :3], 0, 1)
        arr = arr[:, :, :3] @ _GRAY_WEIGHTS
    return arr


def load_image(filename: str | os.PathLike[str], color: bool = True) -> np.ndarray:
    """An image file as float32 in [0, 1]: H x W x 3 RGB, or H x W x 1 if `color` is False.

    Gray files are tiled to 3 channels when `color` is True; alpha is dropped. With
    `color` False, colour files become luma (0.2125 R + 0.7154 G + 0.0721 B, RGBA first
    composited over white), as skimage's imread(as_gray=True) that pycaffe calls.
    """
    img = _read_image(filename, as_gray=not color).astype(np.float32)
    if img.ndim == 2:
        img = img[:, :, np.newaxis]
        if color:
            img = np.tile(img, (1, 1, 3))
    elif img.shape[2] == 4:
        img = img[:, :, :3]
    return img


def _gaussian_1d(image: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d(mode='constant', cval=0), summed in scipy's order."""
    radius = int(_GAUSSIAN_TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * x**2)
    weights = weights / weights.sum()
    src = np.moveaxis(image.astype(np.float64), axis, 0)
    n = src.shape[0]
    padded = np.zeros((n + 2 * radius,) + src.shape[1:])
    padded[radius:radius + n] = src
    # Symmetric kernel: centre tap, then pairs from the outermost inwards, as scipy's C.
    acc = padded[radius:radius + n] * weights[radius]
    for k in range(radius, 0, -1):
        acc = acc + (padded[radius - k:radius - k + n] + padded[radius + k:radius + k + n]) \
            * weights[radius - k]
    return np.moveaxis(acc, 0, axis).astype(image.dtype)


def _skimage_resize(image: np.ndarray, new_dims: tuple[int, int], order: int) -> np.ndarray:
    """skimage.transform.resize(image, new_dims, order, mode='constant') of scikit-image 0.18.

    Anti-aliasing is always on there: a Gaussian of sigma (factor - 1) / 2 per downscaled
    axis, zero outside the image. The warp maps output pixel centres onto the input and
    interpolates with zeros outside, so edge pixels of an upscaled image are darkened
    towards 0, exactly as in pycaffe. Computed in the image's float dtype, as skimage.
    """
    dtype = image.dtype if image.dtype.kind == "f" else np.dtype(np.float64)
    image = image.astype(dtype, copy=False)
    rows, cols = (int(d) for d in new_dims)
    in_rows, in_cols = image.shape[:2]
    factors = (in_rows / rows, in_cols / cols)
    for axis, factor in enumerate(factors):
        sigma = max(0.0, (factor - 1) / 2)
        if sigma > 1e-15:
            image = _gaussian_1d(image, sigma, axis)

    if rows == 1 and cols == 1:
        scale = (1.0, 1.0)
        shift = (in_rows / 2.0 - 0.5, in_cols / 2.0 - 0.5)
    else:
        scale = factors
        shift = (factors[0] * 0.5 - 0.5, factors[1] * 0.5 - 0.5)
    # skimage casts the transform to the image dtype and maps coordinates in it.
    r = dtype.type(scale[0]) * np.arange(rows, dtype=dtype) + dtype.type(shift[0])
    c = dtype.type(scale[1]) * np.arange(cols, dtype=dtype) + dtype.type(shift[1])

    padded = np.zeros((in_rows + 2, in_cols + 2) + image.shape[2:], dtype=dtype)
    padded[1:-1, 1:-1] = image  # index i + 1: pixels outside the image read as cval 0

    def take(ri: np.ndarray, ci: np.ndarray) -> np.ndarray:
        ri = np.clip(ri, -1, in_rows) + 1
        ci = np.clip(ci, -1, in_cols) + 1
        return padded[ri[:, None], ci[None, :]].astype(np.float64)

    if order == 0:
        # C round(): half away from zero.
        rn = (np.sign(r) * np.floor(np.abs(r.astype(np.float64)) + 0.5)).astype(np.int64)
        cn = (np.sign(c) * np.floor(np.abs(c.astype(np.float64)) + 0.5)).astype(np.int64)
        return take(rn, cn).astype(dtype)

    if order == 3:
        out = _bicubic(r, c, lambda ri, ci: take(ri, ci).astype(dtype), image.ndim == 3)
    else:
        r64, c64 = r.astype(np.float64), c.astype(np.float64)
        r0, c0 = np.floor(r64).astype(np.int64), np.floor(c64).astype(np.int64)
        r1, c1 = np.ceil(r64).astype(np.int64), np.ceil(c64).astype(np.int64)
        dr = (r64 - r0)[:, None]
        dc = (c64 - c0)[None, :]
        if image.ndim == 3:
            dr, dc = dr[..., None], dc[..., None]
        top = ((1 - dc) * take(r0, c0) + dc * take(r0, c1))
        bottom = ((1 - dc) * take(r1, c0) + dc * take(r1, c1))
        out = ((1 - dr) * top + dr * bottom).astype(dtype)

    # skimage clips to the range of the (filtered) input; if that range excludes cval,
    # output pixels equal to cval keep it.
    lo, hi = image.min(), image.max()
    keep = (out == 0) if not (lo <= 0 <= hi) else None
    np.clip(out, lo, hi, out=out)
    if keep is not None:
        out[keep] = 0
    return out


def _bicubic(r: np.ndarray, c: np.ndarray,
             take: Callable[[np.ndarray, np.ndarray], np.ndarray], channels: bool
             ) -> np.ndarray:
    """skimage 0.18's bicubic_interpolation (_shared/interpolation.pxd, Keys' Catmull-Rom
    convolution on the 4 x 4 pixels around each point, rows first), in the coordinates'
    float dtype and in its order of operations, as the Cython computes it."""
    f = r.dtype.type
    r0, c0 = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
    xr, xc = (r - r0.astype(r.dtype))[:, None], (c - c0.astype(c.dtype))[None, :]
    if channels:
        xr, xc = xr[..., None], xc[..., None]

    def cubic(x: np.ndarray, f0: np.ndarray, f1: np.ndarray, f2: np.ndarray,
              f3: np.ndarray) -> np.ndarray:
        inner = f(3.0) * (f1 - f2) + f3 - f0
        return f1 + f(0.5) * x * (f2 - f0 + x * (
            f(2.0) * f0 - f(5.0) * f1 + f(4.0) * f2 - f3 + x * inner))

    rows = [cubic(xc, *(take(r0 - 1 + pr, c0 - 1 + pc) for pc in range(4)))
            for pr in range(4)]
    return cubic(xr, *rows)


def _ndimage_zoom(image: np.ndarray, new_dims: tuple[int, int], order: int) -> np.ndarray:
    """scipy.ndimage.zoom(image, new/old per axis, order) of scipy 1.6, for H x W x K.

    Output pixel k samples input coordinate k * (in - 1) / (out - 1): corners align.
    """
    in_shape = image.shape
    zooms = tuple(float(n) / float(o) for n, o in zip(new_dims, in_shape[:2])) + (1.0,)
    out_shape = tuple(round(n * z) for n, z in zip(in_shape, zooms))
    out = image.astype(np.float64)
    for axis in range(image.ndim):
        n_in, n_out = in_shape[axis], out_shape[axis]
        step = (n_in - 1) / (n_out - 1) if n_out > 1 else 1.0
        coords = np.arange(n_out) * step
        if order == 0:
            idx = np.clip(np.floor(coords + 0.5).astype(np.int64), 0, n_in - 1)
            out = np.take(out, idx, axis=axis)
            continue
        lo = np.clip(np.floor(coords).astype(np.int64), 0, n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        t = coords - lo
        bshape = [1] * image.ndim
        bshape[axis] = n_out
        t = t.reshape(bshape)
        out = np.take(out, lo, axis=axis) * (1 - t) + np.take(out, hi, axis=axis) * t
    return out.astype(image.dtype if image.dtype.kind == "f" else np.float64)


def _new_dims(new_dims: Any) -> tuple[int, int]:
    """(height, width) as ints: whole numbers, floats included (pycaffe's skimage takes
    256.0), each at least 1."""
    try:
        dims = [int(d) if float(d).is_integer() and not isinstance(d, bool) else -1
                for d in new_dims]
    except (TypeError, ValueError):
        dims = []
    if len(dims) != 2 or min(dims) < 1:
        raise ShapeError(f"resize_image: new_dims = {new_dims!r}; allowed: (height, width), "
                         "two positive whole numbers")
    return dims[0], dims[1]


def resize_image(im: np.ndarray, new_dims: Sequence[int], interp_order: int = 1) -> np.ndarray:
    """An H x W x K image resized to new_dims = (height, width), as float32.

    1- and 3-channel images: min-max normalised, skimage-style anti-aliased resize
    (`mode='constant'`), de-normalised; constant images come back filled; `interp_order`
    0 (nearest), 1 (linear) or 3 (skimage's bicubic). Other channel counts: scipy-style
    `ndimage.zoom`, order 0 or 1.  The orders pycaffe hands to scipy's splines (2, 4, 5,
    and 3 beyond 1 and 3 channels) are refused.
    """
    im = np.asarray(im)
    if im.ndim != 3:
        raise ShapeError(f"resize_image: image of shape {im.shape} is not H x W x K")
    skimage = im.shape[-1] in (1, 3)
    if interp_order not in ((0, 1, 3) if skimage else (0, 1)):
        raise UnsupportedFieldError(
            f"resize_image: interp_order = {interp_order!r} for an image of "
            f"{im.shape[-1]} channel(s) is not supported (pycaffe computes it with scipy's "
            "spline interpolation, which caffe_fx does not reproduce); supported: 0 "
            "(nearest), 1 (linear), and 3 (bicubic) for 1- and 3-channel images")
    dims = _new_dims(new_dims)
    if skimage:
        im_min, im_max = im.min(), im.max()
        if not im_max > im_min:
            return np.full(dims + (im.shape[-1],), im_min, dtype=np.float32)
        im_std = (im - im_min) / (im_max - im_min)
        resized_std = _skimage_resize(im_std, dims, interp_order)
        resized_im = resized_std * (im_max - im_min) + im_min
    else:
        resized_im = _ndimage_zoom(im, dims, interp_order)
    return resized_im.astype(np.float32)


def oversample(images: Sequence[np.ndarray], crop_dims: Sequence[int]) -> np.ndarray:
    """Ten crops per H x W x K image: 4 corners and centre, then the same mirrored.

    Returns (10 N, h, w, K) float32, crops of image i at [10 i, 10 i + 10).
    """
    im_shape = np.array(images[0].shape)
    crop = np.array(crop_dims)
    h_starts = (0, im_shape[0] - crop[0])
    w_starts = (0, im_shape[1] - crop[1])
    boxes = np.empty((5, 4), dtype=int)
    boxes[:4] = [(i, j, i + crop[0], j + crop[1]) for i in h_starts for j in w_starts]
    # Centre crop: pycaffe's float centre +- half the crop, truncated towards zero.
    centre = im_shape[:2] / 2.0
    boxes[4] = np.concatenate([centre - crop / 2.0, centre + crop / 2.0])
    crops = np.empty((10 * len(images), crop[0], crop[1], im_shape[-1]), dtype=np.float32)
    for n, im in enumerate(images):
        for k, (y0, x0, y1, x1) in enumerate(boxes):
            crops[10 * n + k] = im[y0:y1, x0:x1, :]
            crops[10 * n + 5 + k] = im[y0:y1, x0:x1, :][:, ::-1, :]
    return crops
