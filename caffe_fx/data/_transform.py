"""TransformationParameter applied as Caffe's DataTransformer applies it.

Used by the data feed (feed.py) for Data, ImageData and WindowData records.  Mirrors
src/caffe/data_transformer.cpp: the constructor (mean_file or mean_value), InitRand (its
own mt19937, seeded from one draw of Caffe's stream when mirror, or a TRAIN crop, needs
it) and Transform: mirror = Rand(2) first, then the crop offsets (random in TRAIN, centred
in TEST), then out[c, h, w'] = (x[c, h_off + h, w_off + w] - mean) * scale in float32,
w' mirrored.
"""
from __future__ import annotations

import os

import numpy as np
from google.protobuf.message import DecodeError

from ..errors import DataSourceError, NetDefinitionError, ShapeError
from ..proto import caffe_pb2
from ._rng import MT19937


class Transformer:
    """One data layer's DataTransformer.  `who` names the layer in messages."""

    def __init__(self, param: caffe_pb2.TransformationParameter, phase: int,
                 who: str) -> None:
        self.param, self.phase, self.who = param, phase, who
        self.scale = np.float32(param.scale)
        self.mean: np.ndarray | None = None
        if param.HasField("mean_file"):
            if len(param.mean_value):
                raise NetDefinitionError(f"{who}: transform_param sets both mean_file and "
                                         f"mean_value; Caffe allows one of them")
            self.mean = read_mean_file(param.mean_file, who)
        self.mean_values = np.asarray(param.mean_value, np.float32)
        self.rng: MT19937 | None = None

    def init_rand(self, caffe_rng: MT19937) -> None:
        """DataTransformer::InitRand: draws a seed from Caffe's stream only when needed."""
        if self.param.mirror or (self.phase == caffe_pb2.TRAIN and self.param.crop_size):
            self.rng = MT19937(caffe_rng())
        else:
            self.rng = None

    def _rand(self, n: int) -> int:
        assert self.rng is not None
        return self.rng() % n

    def check(self, shape: tuple[int, int, int], what: str) -> None:
        """The CHECKs Transform makes of a record of (C, H, W) `shape` before reading it."""
        c, h, w = shape
        crop = self.param.crop_size
        if crop and (h < crop or w < crop):
            raise ShapeError(f"{self.who}: transform_param.crop_size = {crop} is larger than "
                             f"{what}, {h} x {w} (height x width); Caffe requires crop_size "
                             f"<= both")
        if self.mean is not None and self.mean.shape != shape:
            raise ShapeError(f"{self.who}: transform_param.mean_file = "
                             f"'{self.param.mean_file}' holds a {_dims(self.mean.shape)} mean "
                             f"but {what} is {_dims(shape)}; Caffe requires the same channels, "
                             f"height and width")
        if len(self.mean_values) not in (0, 1, c):
            raise NetDefinitionError(f"{self.who}: transform_param has "
                                     f"{len(self.mean_values)} mean_value for {what} with {c} "
                                     f"channels; Caffe requires 1 or one per channel")

    def __call__(self, x: np.ndarray, what: str) -> np.ndarray:
        """A (C, H, W) uint8 or float32 record, transformed to float32 (C, crop, crop)."""
        c, h, w = x.shape
        self.check((c, h, w), what)
        mirror = bool(self.param.mirror) and self._rand(2) == 1
        crop = self.param.crop_size
        h_off = w_off = 0
        if crop:
            if self.phase == caffe_pb2.TRAIN:
                h_off = self._rand(h - crop + 1)
                w_off = self._rand(w - crop + 1)
            else:
                h_off, w_off = (h - crop) // 2, (w - crop) // 2
            window = (slice(None), slice(h_off, h_off + crop), slice(w_off, w_off + crop))
        else:
            window = (slice(None), slice(None), slice(None))
        out = x[window].astype(np.float32)
        if self.mean is not None:
            out -= self.mean[window]
        elif len(self.mean_values):
            out -= np.broadcast_to(self.mean_values, (c,))[:, None, None]
        out *= self.scale
        return out[:, :, ::-1].copy() if mirror else out


def read_mean_file(path: str, who: str) -> np.ndarray:
    """A BlobProto binaryproto as Blob::FromProto reads it, as (C, H, W) float32: the
    legacy channels/height/width of the blob (its first image when num > 1)."""
    field = f"transform_param.mean_file = '{path}'"
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        where = "" if os.path.isabs(path) else f" (relative to the current folder, {os.getcwd()})"
        raise DataSourceError(f"{who}: {field} cannot be opened ({e.strerror or e}){where}; "
                              f"Caffe: File not found") from e
    blob = caffe_pb2.BlobProto()
    try:
        blob.ParseFromString(raw)
    except DecodeError as e:
        raise DataSourceError(f"{who}: {field} is not a binary BlobProto ({e})") from e
    dims = list(blob.shape.dim) if blob.HasField("shape") else [
        blob.num, blob.channels, blob.height, blob.width]
    if len(dims) > 4:
        raise ShapeError(f"{who}: {field} has {len(dims)} axes; a mean has at most 4")
    dims = [1] * (4 - len(dims)) + dims
    values = np.asarray(blob.data if len(blob.data) else blob.double_data, np.float32)
    count = int(np.prod(dims))
    if values.size != count:
        raise ShapeError(f"{who}: {field} holds {values.size} values for shape {dims}; "
                         f"Caffe requires one per element")
    return values[:dims[1] * dims[2] * dims[3]].reshape(dims[1:])


def _dims(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape)
