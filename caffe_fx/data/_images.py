"""Images decoded as Caffe's OpenCV decodes them: 8-bit, BGR(A) channel order, (H, W, C).

Used by the data feed (feed.py) for ImageData, DenseImageData and encoded Datums.
Mirrors src/caffe/util/io.cpp (ReadImageToCVMat: cv::imread colour or grey, cv::resize
INTER_LINEAR, INTER_NEAREST for SegNet's label maps; DecodeDatumToCVMat /
DecodeDatumToCVMatNative: cv::imdecode with flags 1, 0, -1) over Pillow.  Where OpenCV
converts itself, its arithmetic is reproduced: libpng's rgb_to_gray as OpenCV's PNG
decoder asks for it (0.299, 0.587), libjpeg's own greyscale output, OpenCV's fixed-point
bilinear resize.  JPEGs decode through Pillow's libjpeg, so
they equal Caffe's where both link the same libjpeg-turbo build (see README).
"""
from __future__ import annotations

import io
from typing import Any

import numpy as np

# EXIF orientations OpenCV (4.x) applies when it decodes a JPEG to colour or grey
_EXIF_ORIENTATION = 0x0112


class ImageReadError(Exception):
    """Raised here, turned into the caller's caffe_fx error with the layer named."""


def decode(data: bytes | str, mode: str) -> np.ndarray:
    """Decodes a file (path) or an encoded buffer.  mode: 'color' (imread/imdecode flag 1),
    'gray' (flag 0) or 'native' (imdecode -1).  Returns uint8 (H, W, C), C in BGR(A)."""
    from PIL import Image, ImageOps

    try:
        image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        with image:
            jpeg = image.format == "JPEG"
            if mode != "native" and jpeg:
                if mode == "gray":
                    image.draft("L", image.size)  # libjpeg's own JCS_GRAYSCALE output
                if _turned(image):
                    image = ImageOps.exif_transpose(image)  # type: ignore[assignment]
            image.load()
            return _channels(image, mode, jpeg, image.format)
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ImageReadError(str(e)) from e


def _turned(image: Any) -> bool:
    try:
        return image.getexif().get(_EXIF_ORIENTATION, 1) != 1
    except Exception:  # noqa: BLE001 - OpenCV, too, ignores EXIF it cannot parse
        return False


def _channels(image: Any, mode: str, jpeg: bool, fmt: str | None = None) -> np.ndarray:
    m = image.mode
    if m in ("I;16", "I;16B", "I;16L", "I", "F") and mode == "native":
        raise ImageReadError(f"a {m} image decodes to more than 8 bits per channel; Caffe "
                             f"requires unsigned bytes (Image data type must be unsigned byte)")
    if mode == "gray":
        if m == "L":
            return np.asarray(image)[:, :, None]
        rgb = np.asarray(image.convert("RGB"), dtype=np.int64)
        if fmt in _OPENCV_GRAY_FORMATS:
            return _opencv_gray(rgb)[:, :, None]
        return _png_gray(rgb)[:, :, None]
    if mode == "native":
        if m in ("L", "1"):
            return np.asarray(image.convert("L"))[:, :, None]
        alpha = m in ("LA", "La", "PA", "RGBA", "RGBa") or (
            m in ("P", "RGB") and "transparency" in image.info and not jpeg)
        if alpha:
            arr = np.asarray(image.convert("RGBA"))
            return np.ascontiguousarray(arr[:, :, [2, 1, 0, 3]])
    arr = np.asarray(image.convert("RGB"))
    return np.ascontiguousarray(arr[:, :, ::-1])


# Formats whose OpenCV decoder converts colour to grey itself (grfmt_pxm.cpp,
# grfmt_bmp.cpp: icvCvt_BGR2Gray_8u_C3C1R), not through the codec library.
_OPENCV_GRAY_FORMATS = frozenset({"PPM", "BMP"})


def _opencv_gray(rgb: np.ndarray) -> np.ndarray:
    """icvCvt_BGR2Gray_8u_C3C1R: 14-bit fixed point (0.114, 0.587, 0.299), rounded."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return ((b * 1868 + g * 9617 + r * 4899 + (1 << 13)) >> 14).astype(np.uint8)


def _png_gray(rgb: np.ndarray) -> np.ndarray:
    """libpng's png_do_rgb_to_gray for 8-bit samples without gamma: coefficients 0.299
    and 0.587 (OpenCV's) as 15-bit fixed point, blue the rest, truncated; grey pixels
    stay as they are."""
    rc, gc = 9797, 19234  # png_fixed(0.299) * 32768 / 100000, truncated; likewise 0.587
    bc = 32768 - rc - gc
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    gray = (rc * r + gc * g + bc * b) >> 15
    same = (r == g) & (g == b)
    return np.where(same, r, gray).astype(np.uint8)


def resize_linear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv::resize(src, dst, Size(width, height)) with INTER_LINEAR on 8-bit (H, W, C):
    per axis the source coordinate (d + 0.5) * scale - 0.5, clamped at the borders, its
    weights as 11-bit fixed point; the horizontal pass in ints, the vertical one as
    OpenCV's SIMD kernel rounds it, ((b0*(s0>>4))>>16 + (b1*(s1>>4))>>16 + 2) >> 2."""
    src_h, src_w, _ = img.shape
    xs, xw = _linear_taps(src_w, width, border_weights=True)
    ys, yw = _linear_taps(src_h, height, border_weights=False)
    s = img.astype(np.int64)
    rows = s[:, xs[:, 0], :] * xw[None, :, 0, None] + s[:, xs[:, 1], :] * xw[None, :, 1, None]
    top = rows[ys[:, 0]] >> 4
    bottom = rows[ys[:, 1]] >> 4
    out = ((yw[:, 0, None, None] * top) >> 16) + ((yw[:, 1, None, None] * bottom) >> 16)
    return np.clip((out + 2) >> 2, 0, 255).astype(np.uint8)


def resize_nearest(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """cv::resize(src, dst, Size(width, height)) with INTER_NEAREST on (H, W, C): source
    index floor(d * (1 / (dst / src))) in double, clamped to the last pixel (resizeNN)."""
    src_h, src_w, _ = img.shape
    ys = np.minimum(np.floor(np.arange(height) * (1.0 / (height / src_h))), src_h - 1)
    xs = np.minimum(np.floor(np.arange(width) * (1.0 / (width / src_w))), src_w - 1)
    return img[ys.astype(np.int64)][:, xs.astype(np.int64)]


def _linear_taps(src: int, dst: int, *, border_weights: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and 11-bit weights per destination pixel.  Past a border OpenCV
    puts the whole weight on the edge pixel for columns, but keeps the weights of rows
    and only clamps their indices."""
    scale = src / dst
    f = ((np.arange(dst) + 0.5) * scale - 0.5).astype(np.float32)
    left = np.floor(f).astype(np.int64)
    f = f - left.astype(np.float32)
    if border_weights:
        f = np.where((left < 0) | (left >= src - 1), np.float32(0), f)
    right = np.clip(left + 1, 0, src - 1)
    left = np.clip(left, 0, src - 1)
    w1 = np.rint(f * np.float32(2048)).astype(np.int64)
    w0 = np.rint((np.float32(1) - f) * np.float32(2048)).astype(np.int64)
    return np.stack([left, right], 1), np.stack([w0, w1], 1)
