"""The batches Caffe's data layers fill their tops with, read ahead in a background thread.

Beside the lowering stage: a net's data-layer tops are GraphModule inputs, and this feeds
them.  Mirrors src/caffe/layers/{base_data,data,image_data,hdf5_data,memory_data}_layer.cpp,
SegNet's dense_image_data_layer.cpp and DataTransformer (_transform.py): set-up draws
from Caffe's random stream in Caffe's order, each batch is the records Caffe reads in its
order (cursors wrap, ImageData, DenseImageData and HDF5Data reshuffle each epoch,
DataLayer/HDF5DataLayer::Skip keep offset % world_size == rank in TRAIN), transformed as
Caffe transforms them.  Deliberate differences are listed
in open_feed's docstring and the README.
"""
from __future__ import annotations

import atexit
import contextlib
import contextvars
import logging
import math
import os
import queue
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _memory
from ..errors import CaffeFxError, DataSourceError, InputArrayError, InputError, ShapeError
from ..proto import caffe_pb2
from . import _images
from ._db import Cursor
from ._rng import MT19937, GlibcRand, caffe_shuffle, random_shuffle
from ._transform import Transformer
from .top_shapes import DATA_LAYER_TYPES, _words, data_top_shapes

__all__ = ["DataFeed", "open_feed"]

_LOG = logging.getLogger("caffe_fx.data")
_RESTART = "Restarting data prefetching from start."


def open_feed(net_param: caffe_pb2.NetParameter, *, phase: int, where: str,
              seed: int | None = None, prefetch: int = 3, rank: int = 0,
              world_size: int = 1) -> DataFeed | None:
    """Opens the data layers of `net_param` (already filtered to `phase`, as
    pipeline.prepare(...).net gives it); None when it has none.

    `seed` is Caffe's random seed (Caffe::set_random_seed, a solver's random_seed): the
    data layers draw their transformer and shuffle seeds from that stream in net order at
    set-up, as Caffe's do when no layer before them draws (fillers of earlier layers and
    earlier nets of the same process are not counted); None seeds from the OS, as Caffe
    does.  `prefetch` batches are read ahead (Caffe's PREFETCH_COUNT).  In TRAIN, Data and
    HDF5Data keep the records whose offset % world_size == rank (DataLayer::Skip); TEST
    keeps all.  Sources are opened and checked here, with Caffe's set-up errors.

    Deliberate differences: HDF5Data's shuffle replays glibc's rand() from a fresh process
    for each feed (Caffe's stream is process-wide); a later HDF5 file whose trailing dims
    differ from the first's raises ShapeError (Caffe copies out of bounds); MemoryData is
    fed by DataFeed.set_memory (MemoryDataLayer::Reset, untransformed); WindowData with
    cache_images reads the files instead of caching them (same pixels), and a window
    file naming an unreadable image raises (Caffe logs and leaves the batch part-filled).
    SegNet's DenseImageData draws its mirror and crop offsets from this feed's stream in
    batch order; the fork's prefetch thread shares Caffe's one stream with the layers of
    the net, so its draws match only when no other layer (Dropout, a random filler)
    draws while it reads."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"{where}: open_feed(rank={rank}, world_size={world_size}); "
                         f"allowed: world_size >= 1 and 0 <= rank < world_size")
    if prefetch < 1:
        raise InputError(f"{where}: open_feed(prefetch={prefetch}); allowed: >= 1")
    layers = [lp for lp in net_param.layer if lp.type in DATA_LAYER_TYPES]
    if not layers:
        return None
    caffe_rng = MT19937.unseeded() if seed is None else MT19937(seed)
    glibc = GlibcRand()
    loaders: list[_Loader] = []
    try:
        for lp in layers:
            ctx = _Context(lp, where, phase, rank, world_size)
            kind = {"Data": _DataLoader, "ImageData": _ImageLoader, "HDF5Data": _HDF5Loader,
                    "MemoryData": _MemoryLoader, "WindowData": _WindowLoader,
                    "DenseImageData": _DenseImageLoader}[lp.type]
            loaders.append(kind(ctx, caffe_rng, glibc))
        # Caffe's PREFETCH_COUNT batches in the queue, one being read, one in use.
        _memory.check_fits(
            ((top, (prefetch + 2) * 4 * math.prod(shape)) for ld in loaders
             for top, shape in zip(ld.tops, ld.ctx.shapes)),
            where, f"the data layers' batches ({prefetch} read ahead, one being read, one "
            "in use)", "give the data layers a smaller batch_size")
    except BaseException:
        for loader in loaders:
            loader.close()
        raise
    return DataFeed(loaders, prefetch)


class _Context:
    """One data layer being fed: its params, phase, rank and how its errors read."""

    def __init__(self, layer: caffe_pb2.LayerParameter, where: str, phase: int, rank: int,
                 world_size: int) -> None:
        self.layer, self.where, self.phase = layer, where, phase
        self.rank, self.world_size = rank, world_size
        self.who = f"{where}: layer '{layer.name}' ({layer.type})"
        self.shapes = data_top_shapes(layer, where, advise=False)

    def keep(self, offset: int) -> bool:
        """DataLayer::Skip, negated: TEST keeps every record."""
        return offset % self.world_size == self.rank or self.phase == caffe_pb2.TEST


class _Loader:
    """One data layer: set up in the caller's thread, batches in the feed's worker."""

    threaded = True

    def __init__(self, ctx: _Context, caffe_rng: MT19937, glibc: GlibcRand) -> None:
        self.ctx = ctx
        self.tops = list(ctx.layer.top)

    def batch(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Releases what the worker opened (called after the worker stopped)."""


# -- Data (LMDB / LevelDB) --------------------------------------------------------------

def _cursor(ctx: _Context) -> Cursor:
    """The layer's database, opened in the thread that reads it."""
    p = ctx.layer.data_param

    def fail(problem: str, cause: Exception) -> Exception:
        return DataSourceError(f"{ctx.who}: data_param.source = '{p.source}' {problem}")
    return Cursor(p.source, p.backend, fail)


class _DataLoader(_Loader):
    """DataLayer: Datums in key order; BaseDataLayer and BasePrefetchingDataLayer each
    call InitRand, so the transformer's seed is the second draw."""

    def __init__(self, ctx: _Context, caffe_rng: MT19937, glibc: GlibcRand) -> None:
        super().__init__(ctx, caffe_rng, glibc)
        layer = ctx.layer
        self.transform = Transformer(layer.transform_param, ctx.phase, ctx.who)
        self.transform.init_rand(caffe_rng)
        self.batch_size = layer.data_param.batch_size
        cursor = _cursor(ctx)
        try:
            key, value = cursor.item()
            first = self._record(key, value)
        finally:
            cursor.close()
        self.transform.check(first.shape, self._what(key))
        self.transform.init_rand(caffe_rng)
        self.cursor: Cursor | None = None
        self.offset = 0
        tp = layer.transform_param
        if (tp.force_color or tp.force_gray) and not _parse(value, ctx, key).encoded:
            _LOG.error("%s: force_color and force_gray only for encoded datum", ctx.who)

    def _what(self, key: bytes) -> str:
        return f"the record '{key.decode(errors='replace')}' of data_param.source = " \
               f"'{self.ctx.layer.data_param.source}'"

    def _record(self, key: bytes, value: bytes) -> np.ndarray:
        """A Datum as (C, H, W): raw bytes (uint8), float_data, or a decoded image."""
        datum = _parse(value, self.ctx, key)
        tp = self.ctx.layer.transform_param
        if datum.encoded:
            mode = "color" if tp.force_color else "gray" if tp.force_gray else "native"
            try:
                return _images.decode(datum.data, mode).transpose(2, 0, 1)
            except _images.ImageReadError as e:
                raise DataSourceError(f"{self.ctx.who}: {self._what(key)} cannot be "
                                      f"decoded as an image ({e})") from e
        shape = (datum.channels, datum.height, datum.width)
        count = shape[0] * shape[1] * shape[2]
        if datum.data:
            values: np.ndarray = np.frombuffer(datum.data, np.uint8)
        else:
            values = np.asarray(datum.float_data, np.float32)
        if datum.channels <= 0 or values.size != count:
            raise ShapeError(f"{self.ctx.who}: {self._what(key)} is a Datum of "
                             f"{shape[0]} x {shape[1]} x {shape[2]} (channels x height x "
                             f"width) holding {values.size} values; Caffe requires "
                             f"channels > 0 and one value per element")
        return values.reshape(shape)

    def batch(self) -> dict[str, np.ndarray]:
        if self.cursor is None:
            self.cursor = _cursor(self.ctx)
        data: list[np.ndarray] = []
        labels = np.zeros(self.batch_size, np.float32)
        for i in range(self.batch_size):
            while not self.ctx.keep(self.offset):
                self._next()
            key, value = self.cursor.item()
            out = self.transform(self._record(key, value), self._what(key))
            if data and out.shape != data[0].shape:
                raise ShapeError(f"{self.ctx.who}: {self._what(key)} transforms to "
                                 f"{_dims(out.shape)} but the batch's first record to "
                                 f"{_dims(data[0].shape)}; Caffe requires every record of "
                                 f"a batch to have the same shape")
            data.append(out)
            labels[i] = _parse(value, self.ctx, key).label
            self._next()
        batch = {self.tops[0]: np.stack(data)}
        if len(self.tops) > 1:
            batch[self.tops[1]] = labels
        return batch

    def _next(self) -> None:
        assert self.cursor is not None
        if not self.cursor.next():
            _LOG.info(_RESTART)
        self.offset += 1

    def close(self) -> None:
        if self.cursor is not None:
            self.cursor.close()
            self.cursor = None


def _parse(value: bytes, ctx: _Context, key: bytes) -> caffe_pb2.Datum:
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except Exception as e:
        raise DataSourceError(f"{ctx.who}: the record '{key.decode(errors='replace')}' of "
                              f"data_param.source = '{ctx.layer.data_param.source}' is not "
                              f"a Datum ({e})") from e
    return datum


# -- ImageData and DenseImageData: a list of files -----------------------------------------

class _ListLoader(_Loader):
    """What ImageDataLayer and SegNet's DenseImageDataLayer share: the source list read at
    set-up (shuffled then by its own prefetch_rng_, and at each epoch), rand_skip's start,
    one shape per batch and the restart at the list's end.  `field` names the param,
    `unit` what a line lists, `says` whose messages are quoted (Caffe, the fork)."""

    field = ""
    unit = ""
    says = "Caffe"
    empty = " (Caffe: File is empty)"  # DenseImageData's set-up reads lines_[0] unchecked

    def _open_list(self, param: Any, caffe_rng: MT19937, read: Any) -> None:
        self.param = param
        where = f"{self.ctx.who}: {self.field}.source = '{param.source}'"
        try:
            self.lines = read(param.source)
        except OSError as e:
            raise DataSourceError(f"{where} cannot be opened ({e.strerror or e})") from e
        if not self.lines:
            raise DataSourceError(f"{where} lists no {self.unit}{self.empty}")
        self.shuffle_rng: MT19937 | None = None
        if param.shuffle:
            self.shuffle_rng = MT19937(caffe_rng())
            caffe_shuffle(self.lines, self.shuffle_rng)
        self.index = 0
        if param.rand_skip:
            skip = caffe_rng() % param.rand_skip
            if skip >= len(self.lines):
                raise InputError(f"{self.ctx.who}: {self.field}.rand_skip = {param.rand_skip}"
                                 f" drew a skip of {skip} but {self.field}.source = "
                                 f"'{param.source}' lists {len(self.lines)} {self.unit}; "
                                 f"{self.says}: Not enough points to skip")
            self.index = skip

    def _same_shape(self, data: list[np.ndarray], out: np.ndarray, what: str,
                    hint: str) -> None:
        if data and out.shape != data[0].shape:
            raise ShapeError(f"{self.ctx.who}: {what} transforms to {_dims(out.shape)} but "
                             f"the batch's first image to {_dims(data[0].shape)}; "
                             f"{self.says} requires every image of a batch to have the "
                             f"same shape (set {hint})")

    def _advance(self) -> None:
        self.index += 1
        if self.index >= len(self.lines):
            _LOG.info(_RESTART)
            self.index = 0
            if self.shuffle_rng is not None:
                caffe_shuffle(self.lines, self.shuffle_rng)


class _ImageLoader(_ListLoader):
    """ImageDataLayer: the list's images in order (shuffled at set-up and each epoch with
    its own prefetch_rng_), read colour or grey, resized, transformed."""

    field, unit = "image_data_param", "images"

    def __init__(self, ctx: _Context, caffe_rng: MT19937, glibc: GlibcRand) -> None:
        super().__init__(ctx, caffe_rng, glibc)
        self.transform = Transformer(ctx.layer.transform_param, ctx.phase, ctx.who)
        self.transform.init_rand(caffe_rng)
        self._open_list(ctx.layer.image_data_param, caffe_rng, _image_lines)
        first = self._image(self.index)
        self.transform.check(first.shape, self._what(self.index))
        self.transform.init_rand(caffe_rng)

    def _what(self, index: int) -> str:
        return f"the image '{self.param.root_folder}{self.lines[index][0]}'"

    def _image(self, index: int) -> np.ndarray:
        """ReadImageToCVMat(root_folder + name, new_height, new_width, is_color), (C, H, W)."""
        p = self.param
        path = p.root_folder + self.lines[index][0]
        try:
            img = _images.decode(path, "color" if p.is_color else "gray")
        except (_images.ImageReadError, OSError) as e:
            raise DataSourceError(f"{self.ctx.who}: image_data_param.source = '{p.source}' "
                                  f"lists the image '{path}', which cannot be read ({e}); "
                                  f"Caffe: Could not load {self.lines[index][0]}") from e
        if p.new_height > 0 and p.new_width > 0:
            img = _images.resize_linear(img, p.new_height, p.new_width)
        return img.transpose(2, 0, 1)

    def batch(self) -> dict[str, np.ndarray]:
        data: list[np.ndarray] = []
        labels = np.zeros(self.param.batch_size, np.float32)
        for i in range(self.param.batch_size):
            out = self.transform(self._image(self.index), self._what(self.index))
            self._same_shape(data, out, self._what(self.index),
                             "new_height/new_width or crop_size")
            data.append(out)
            labels[i] = self.lines[self.index][1]
            self._advance()
        return {self.tops[0]: np.stack(data), self.tops[1]: labels}


def _image_lines(path: str) -> list[tuple[str, int]]:
    """std::getline lines, each split at its last space: (name, atoi(label))."""
    with open(path, "rb") as f:
        raw = f.read()
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for line in lines:
        text = os.fsdecode(line)
        space = text.rfind(" ")
        out.append((text[:space] if space >= 0 else text, _atoi(text[space + 1:])))
    return out


def _atoi(text: str) -> int:
    text = text.lstrip(" \t\n\v\f\r")
    sign, digits = 1, ""
    if text[:1] in "+-" and text[:1]:
        sign, text = (-1 if text[0] == "-" else 1), text[1:]
    for ch in text:
        if not ch.isdigit() or not ch.isascii():
            break
        digits += ch
    return sign * int(digits) if digits else 0


# -- DenseImageData (SegNet) ----------------------------------------------------------------

class _DenseImageLoader(_ListLoader):
    """SegNet's DenseImageDataLayer (alexgkendall/caffe-segnet dense_image_data_layer.cpp):
    "image label" pairs in list order (shuffled at set-up and each epoch by its own
    prefetch_rng_), the image read colour or grey and resized bilinearly, the label map
    grey and resized by nearest neighbour; per item, mirror (one draw) then the crop
    offsets (two draws) from Caffe's own stream, which that fork shares with its prefetch
    thread; then the image transformed (mean, scale) and the label kept as it is.  As the
    fork's set-up, the first pair is read (and its sizes checked) before any batch."""

    field, unit, says, empty = "dense_image_data_param", "pairs", "the fork", ""

    def __init__(self, ctx: _Context, caffe_rng: MT19937, glibc: GlibcRand) -> None:
        super().__init__(ctx, caffe_rng, glibc)
        self.rng = caffe_rng
        self.transform = Transformer(ctx.layer.transform_param, ctx.phase, ctx.who)
        self._open_list(ctx.layer.dense_image_data_param, caffe_rng, _dense_pairs)
        img, lab = self._pair(self.index)
        p = self.param
        if p.crop_height > 0 and p.crop_width > 0:
            img = img[:p.crop_height, :p.crop_width]  # the shape Transform sees
        self.transform.check(img.transpose(2, 0, 1).shape, self._what(self.index))

    def _what(self, index: int) -> str:
        return f"the image '{self.param.root_folder}{self.lines[index][0]}'"

    def _read(self, index: int, which: int) -> np.ndarray:
        """ReadImageToCVMat of the pair's image (which 0) or label (1), (H, W, C) uint8."""
        p = self.param
        name = self.lines[index][which]
        path = p.root_folder + name
        mode = "color" if p.is_color and which == 0 else "gray"
        try:
            img = _images.decode(path, mode)
        except (_images.ImageReadError, OSError) as e:
            raise DataSourceError(f"{self.ctx.who}: dense_image_data_param.source = "
                                  f"'{p.source}' lists the {('image', 'label')[which]} "
                                  f"'{path}', which cannot be read ({e}); the fork: Could "
                                  f"not load {name}") from e
        if p.new_height > 0 and p.new_width > 0:
            resize = _images.resize_nearest if which else _images.resize_linear
            img = resize(img, p.new_height, p.new_width)
        return img

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The pair's image and label, of one height x width, as the fork requires."""
        img, lab = self._read(index, 0), self._read(index, 1)
        if img.shape[:2] != lab.shape[:2]:
            raise ShapeError(f"{self.ctx.who}: {self._what(index)} is {_dims(img.shape[:2])} "
                             f"but its label '{self.param.root_folder}{self.lines[index][1]}' "
                             f"{_dims(lab.shape[:2])} (height x width); the fork requires "
                             f"them equal")
        return img, lab

    def batch(self) -> dict[str, np.ndarray]:
        p = self.param
        data: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        for _ in range(p.batch_size):
            img, lab = self._pair(self.index)
            what = self._what(self.index)
            if p.mirror and self.rng() % 2:
                img, lab = img[:, ::-1], lab[:, ::-1]
            if p.crop_height > 0 and p.crop_width > 0:
                h, w = img.shape[:2]
                if h < p.crop_height or w < p.crop_width:
                    raise ShapeError(f"{self.ctx.who}: {what} is {h} x {w}, smaller than "
                                     f"dense_image_data_param.crop_height x crop_width = "
                                     f"{p.crop_height} x {p.crop_width}")
                h_off = self.rng() % (h - p.crop_height + 1)
                w_off = self.rng() % (w - p.crop_width + 1)
                window = (slice(h_off, h_off + p.crop_height), slice(w_off, w_off + p.crop_width))
                img, lab = img[window], lab[window]
            out = self.transform(img.transpose(2, 0, 1), what)
            self._same_shape(data, out, what, "new_height/new_width, crop_height/crop_width, "
                             "or batch_size: 1")
            data.append(out)
            labels.append(lab.transpose(2, 0, 1).astype(np.float32))
            self._advance()
        return {self.tops[0]: np.stack(data), self.tops[1]: np.stack(labels)}


def _dense_pairs(path: str) -> list[tuple[str, str]]:
    """`while (infile >> image >> label)`: the file's words in pairs."""
    with open(path, "rb") as f:
        words = list(_words(f))
    return list(zip(words[0::2], words[1::2]))


# -- HDF5Data -----------------------------------------------------------------------------

class _HDF5Loader(_Loader):
    """HDF5DataLayer: the listed files' rows in order; with shuffle, the file order at
    set-up and each pass, and the rows at each load and each file's end, by
    std::random_shuffle (glibc rand())."""

    def __init__(self, ctx: _Context, caffe_rng: MT19937, glibc: GlibcRand) -> None:
        super().__init__(ctx, caffe_rng, glibc)
        p = ctx.layer.hdf5_data_param
        self.param, self.rand = p, glibc
        with open(p.source, "rb") as f:
            self.files = list(_words(f))
        self.order = list(range(len(self.files)))
        if p.shuffle:
            random_shuffle(self.order, self.rand)
        self.current_file = 0
        self._load(self.files[self.order[0]])
        self.row = 0
        self.offset = 0

    def _load(self, path: str) -> None:
        """LoadHDF5FileData: every top's dataset as float32 (HDF5 converts, as
        hdf5_load_nd_dataset asks it to)."""
        import h5py

        p = self.param
        where = f"the HDF5 file '{path}' (listed in hdf5_data_param.source = '{p.source}')"
        try:
            with h5py.File(path, "r") as f:
                blobs = []
                for top in self.tops:
                    if not isinstance(f.get(top), h5py.Dataset):
                        raise DataSourceError(f"{self.ctx.who}: {where} has no dataset "
                                              f"'{top}' (each top reads the dataset named "
                                              f"after it)")
                    blobs.append(f[top].astype("f4")[()])
        except OSError as e:
            raise DataSourceError(f"{self.ctx.who}: {where} cannot be opened ({e}); Caffe: "
                                  f"Failed opening HDF5 file") from e
        rows = blobs[0].shape[0] if blobs[0].ndim else 0
        for top, blob, shape in zip(self.tops, blobs, self.ctx.shapes):
            if blob.ndim < 1 or blob.shape[0] != rows:
                raise ShapeError(f"{self.ctx.who}: dataset '{top}' of {where} has shape "
                                 f"{blob.shape} but '{self.tops[0]}' has {rows} rows; Caffe "
                                 f"requires every dataset to have as many")
            if tuple(blob.shape[1:]) != tuple(shape[1:]):
                raise ShapeError(f"{self.ctx.who}: dataset '{top}' of {where} has rows of "
                                 f"shape {blob.shape[1:]}, but the first file's give the top "
                                 f"{tuple(shape)}; every file must have rows of one shape")
        if rows == 0:
            raise ShapeError(f"{self.ctx.who}: {where} has no rows")
        self.blobs = blobs
        self.perm = list(range(rows))
        if p.shuffle:
            random_shuffle(self.perm, self.rand)

    def _next(self) -> None:
        """HDF5DataLayer::Next."""
        self.row += 1
        if self.row == len(self.perm):
            if len(self.files) > 1:
                self.current_file += 1
                if self.current_file == len(self.files):
                    self.current_file = 0
                    if self.param.shuffle:
                        random_shuffle(self.order, self.rand)
                self._load(self.files[self.order[self.current_file]])
            self.row = 0
            if self.param.shuffle:
                random_shuffle(self.perm, self.rand)
        self.offset += 1

    def batch(self) -> dict[str, np.ndarray]:
        out = [np.empty(s, np.float32) for s in self.ctx.shapes]
        for i in range(self.param.batch_size):
            while not self.ctx.keep(self.offset):
                self._next()
            for arr, blob in zip(out, self.blobs):
                arr[i] = blob[self.perm[self.row]]
            self._next()
        return dict(zip(self.tops, out))


# -- WindowData -----------------------------------------------------------------------------

class _WindowLoader(_Loader):
    """WindowDataLayer: batch_size - fg windows drawn from the background windows, then
    fg = batch_size * fg_fraction from the foreground ones, each by one draw of its own
    prefetch_rng_ (and one more for mirror); the window (grown by context_pad, squared
    with crop_mode "square", clipped to the image) warped to crop_size with cv::resize."""

    def __init__(self, ctx: _Context, caffe_rng: MT19937, glibc: GlibcRand) -> None:
        super().__init__(ctx, caffe_rng, glibc)
        p, tp = ctx.layer.window_data_param, ctx.layer.transform_param
        self.param, self.crop = p, tp.crop_size
        transform = Transformer(tp, ctx.phase, ctx.who)  # unused by load_batch, but drawn
        transform.init_rand(caffe_rng)
        self.rng = MT19937(caffe_rng()) if (tp.mirror or tp.crop_size) else None
        self.images: list[str] = []
        self.fg: list[tuple[int, int, int, int, int, int]] = []
        self.bg: list[tuple[int, int, int, int, int, int]] = []
        with open(p.source, "rb") as f:
            words = _words(f)
            for hashtag in words:
                index = int(next(words))
                self.images.append(p.root_folder + next(words))
                for _ in range(3):
                    next(words)
                for _ in range(int(next(words))):
                    label, overlap = int(next(words)), np.float32(next(words))
                    x1, y1, x2, y2 = (int(next(words)) for _ in range(4))
                    if overlap >= np.float32(p.fg_threshold):
                        if label <= 0:
                            raise InputError(f"{ctx.who}: window_data_param.source = "
                                             f"'{p.source}' has a foreground window of "
                                             f"label {label}; Caffe requires labels > 0")
                        self.fg.append((index, label, x1, y1, x2, y2))
                    elif overlap < np.float32(p.bg_threshold):
                        self.bg.append((index, 0, x1, y1, x2, y2))
        for kind, windows in (("foreground", self.fg), ("background", self.bg)):
            if not windows:
                raise InputError(f"{ctx.who}: window_data_param.source = '{p.source}' has no "
                                 f"{kind} windows (fg_threshold = {p.fg_threshold}, "
                                 f"bg_threshold = {p.bg_threshold}); Caffe needs some of each")
        self.mean = transform.mean
        self.mean_values = np.broadcast_to(transform.mean_values, (ctx.shapes[0][1],)) \
            if len(transform.mean_values) else None
        transform.init_rand(caffe_rng)

    def _image(self, index: int) -> np.ndarray:
        path = self.images[index]
        try:
            return _images.decode(path, "color")
        except (_images.ImageReadError, OSError) as e:
            raise DataSourceError(f"{self.ctx.who}: window_data_param.source = "
                                  f"'{self.param.source}' names the image '{path}', which "
                                  f"cannot be read ({e}); Caffe: Could not open or find "
                                  f"file {path}") from e

    def batch(self) -> dict[str, np.ndarray]:
        p, crop = self.param, self.crop
        assert self.rng is not None
        n, channels = p.batch_size, self.ctx.shapes[0][1]
        data = np.zeros((n, channels, crop, crop), np.float32)
        labels = np.zeros(n, np.float32)
        num_fg = int(np.float32(n) * np.float32(p.fg_fraction))
        item = 0
        for windows, count in ((self.bg, n - num_fg), (self.fg, num_fg)):
            for _ in range(count):
                index, label, x1, y1, x2, y2 = windows[self.rng() % len(windows)]
                mirror = bool(self.ctx.layer.transform_param.mirror) and self.rng() % 2 == 1
                img = self._image(index)
                if img.shape[2] != channels:
                    raise ShapeError(f"{self.ctx.who}: '{self.images[index]}' has "
                                     f"{img.shape[2]} channels, the top {channels}")
                rows, cols = img.shape[:2]
                size_h = size_w = crop
                pad_h = pad_w = 0
                if p.context_pad > 0 or p.crop_mode == "square":
                    f32 = np.float32
                    context = f32(crop) / f32(crop - 2 * p.context_pad)
                    half_h, half_w = f32((y2 - y1 + 1) / 2.0), f32((x2 - x1 + 1) / 2.0)
                    cx, cy = f32(x1) + half_w, f32(y1) + half_h
                    if p.crop_mode == "square":
                        half_h = half_w = max(half_h, half_w)
                    x1, x2 = _round(cx - half_w * context), _round(cx + half_w * context)
                    y1, y2 = _round(cy - half_h * context), _round(cy + half_h * context)
                    unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
                    pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
                    pad_x2, pad_y2 = max(0, x2 - cols + 1), max(0, y2 - rows + 1)
                    x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
                    scale_x, scale_y = f32(crop) / f32(unclipped_w), f32(crop) / f32(unclipped_h)
                    size_w = _round(f32(x2 - x1 + 1) * scale_x)
                    size_h = _round(f32(y2 - y1 + 1) * scale_y)
                    pad_h = _round(f32(pad_y1) * scale_y)
                    pad_w = _round(f32(pad_x2 if mirror else pad_x1) * scale_x)
                    size_h = min(size_h, crop - pad_h)
                    size_w = min(size_w, crop - pad_w)
                if not (0 <= x1 <= x2 < cols and 0 <= y1 <= y2 < rows):
                    raise ShapeError(f"{self.ctx.who}: the window ({x1}, {y1}, {x2}, {y2}) of "
                                     f"'{self.images[index]}' is outside its {rows} x {cols} "
                                     f"pixels")
                warped = _images.resize_linear(img[y1:y2 + 1, x1:x2 + 1], size_h, size_w)
                if mirror:
                    warped = warped[:, ::-1]
                pixels = warped.transpose(2, 0, 1).astype(np.float32)
                window = (slice(None), slice(pad_h, pad_h + size_h),
                          slice(pad_w, pad_w + size_w))
                if self.mean is not None:
                    off = (self.mean.shape[2] - crop) // 2
                    pixels -= self.mean[:, off + pad_h:off + pad_h + size_h,
                                        off + pad_w:off + pad_w + size_w]
                elif self.mean_values is not None:
                    pixels -= self.mean_values[:, None, None]
                data[item][window] = pixels * np.float32(p.scale)
                labels[item] = label
                item += 1
        return {self.tops[0]: data, self.tops[1]: labels}


def _round(x: np.float32) -> int:
    """C's round(): halves away from zero."""
    v = float(x)
    return int(np.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)


# -- MemoryData -----------------------------------------------------------------------------

class _MemoryLoader(_Loader):
    """MemoryDataLayer after Reset(data, labels): batch_size rows at a time, wrapping."""

    threaded = False

    def __init__(self, ctx: _Context, caffe_rng: MT19937, glibc: GlibcRand) -> None:
        super().__init__(ctx, caffe_rng, glibc)
        self.param = ctx.layer.memory_data_param
        self.arrays: tuple[np.ndarray, np.ndarray] | None = None
        self.pos = 0

    def reset(self, data: Any, labels: Any) -> None:
        p, who = self.param, self.ctx.who
        data = np.ascontiguousarray(data, np.float32)
        labels = np.ascontiguousarray(labels, np.float32).reshape(-1)
        chw = (p.channels, p.height, p.width)
        if data.ndim != 4 or data.shape[1:] != chw:
            raise InputArrayError(f"{who}: set_memory data has shape {data.shape}; allowed: "
                                  f"(n, {p.channels}, {p.height}, {p.width}) (memory_data_param)")
        if data.shape[0] != labels.shape[0] or data.shape[0] % p.batch_size or not len(data):
            raise InputArrayError(f"{who}: set_memory got {data.shape[0]} rows of data and "
                                  f"{labels.shape[0]} labels; Caffe requires as many labels as "
                                  f"rows, a positive multiple of batch_size = {p.batch_size}")
        self.arrays, self.pos = (data, labels), 0

    def batch(self) -> dict[str, np.ndarray]:
        if self.arrays is None:
            raise InputError(f"{self.ctx.who}: MemoryDataLayer needs to be initialized by "
                             f"calling Reset: call feed.set_memory('{self.ctx.layer.name}', "
                             f"data, labels) first")
        data, labels = self.arrays
        b = self.param.batch_size
        out = {self.tops[0]: data[self.pos:self.pos + b].copy(),
               self.tops[1]: labels[self.pos:self.pos + b].copy()}
        self.pos = (self.pos + b) % len(data)
        return out


# -- the feed -------------------------------------------------------------------------------

class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class DataFeed:
    """The batches of a net's data layers, read ahead by one background thread into a
    bounded queue (open_feed makes it).  A context manager; close() joins the thread."""

    def __init__(self, loaders: list[_Loader], prefetch: int) -> None:
        self._loaders = loaders
        self._threaded = [ld for ld in loaders if ld.threaded]
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        if self._threaded:
            # the worker holds the loaders and the queue, not the feed: a feed nobody
            # holds is collected, and its __del__ stops the worker
            # ... and runs in the opener's context (errors.CALLER spells its errors)
            self._thread = threading.Thread(
                target=contextvars.copy_context().run,
                args=(_work, self._threaded, self._queue, self._stop),
                name="caffe_fx-data-feed", daemon=True)
            _running.add(self)
            # atexit runs its hooks last registered first: moved to the top here, after
            # the loaders imported their libraries (h5py's hook unregisters its type
            # converters, which a read still under way then needs)
            atexit.unregister(_close_running)
            atexit.register(_close_running)
            self._thread.start()

    @property
    def tops(self) -> list[str]:
        """Every data-layer top, in net order."""
        return [t for ld in self._loaders for t in ld.tops]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each top's shape as Caffe's set-up gives it."""
        return {t: tuple(s) for ld in self._loaders for t, s in zip(ld.tops, ld.ctx.shapes)}

    def set_memory(self, layer: str, data: Any, labels: Any) -> None:
        """MemoryDataLayer::Reset for the MemoryData layer named `layer`: float32
        (n, C, H, W) data and n labels, n a multiple of batch_size; batches then cycle."""
        for ld in self._loaders:
            if isinstance(ld, _MemoryLoader) and ld.ctx.layer.name == layer:
                ld.reset(data, labels)
                return
        names = [ld.ctx.layer.name for ld in self._loaders if isinstance(ld, _MemoryLoader)]
        raise InputError(f"set_memory('{layer}'): no MemoryData layer of that name; the "
                         f"feed's MemoryData layers: {names}")

    def next(self) -> dict[str, np.ndarray]:
        """The next batch for every data-layer top (float32), as Forward fills them."""
        if self._closed:
            raise InputError("DataFeed.next(): the feed is closed")
        if self._failed is not None:
            raise self._failed
        batch: dict[str, np.ndarray] = {}
        if self._thread is not None:
            while True:
                try:
                    item = self._queue.get(timeout=0.1)
                    break
                except queue.Empty:
                    if not self._thread.is_alive():
                        raise InputError("DataFeed.next(): the reader thread has stopped")
            if isinstance(item, _Failure):
                self._failed = _as_caffe_error(item.error, self._threaded)
                raise self._failed
            batch.update(item)
        for ld in self._loaders:
            if not ld.threaded:
                batch.update(ld.batch())
        return {t: batch[t] for t in self.tops}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            yield self.next()

    def close(self) -> None:
        """Stops and joins the reader thread and closes the sources; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for ld in self._loaders:
            ld.close()

    def __enter__(self) -> DataFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown
            self.close()


# Feeds whose reader thread may still run; at exit _close_running stops them.
_running: weakref.WeakSet[DataFeed] = weakref.WeakSet()


def _close_running() -> None:
    """Stops and joins every reader thread before the interpreter finalizes.  A daemon
    thread still reading when Python tears its modules down froze inside h5py holding
    its lock: the exit of a script that ran an HDF5Data net hung, or aborted with a
    double free or a segfault, about one run in three."""
    for feed in list(_running):
        with contextlib.suppress(Exception):
            feed.close()


def _work(loaders: list[_Loader], out: queue.Queue[Any], stop: threading.Event) -> None:
    """The reader thread: whole batches into the bounded queue until stopped or failed."""
    while not stop.is_set():
        try:
            item: Any = {t: a for ld in loaders for t, a in ld.batch().items()}
        except BaseException as e:  # noqa: BLE001 - handed to next()
            item = _Failure(e)
        while not stop.is_set():
            try:
                out.put(item, timeout=0.05)
                break
            except queue.Full:
                continue
        if isinstance(item, _Failure):
            return


def _as_caffe_error(error: BaseException, loaders: list[_Loader]) -> BaseException:
    if isinstance(error, CaffeFxError):
        return error
    names = ", ".join(f"'{ld.ctx.layer.name}'" for ld in loaders)
    wrapped = DataSourceError(f"{loaders[0].ctx.where}: reading the next batch of data "
                              f"layer(s) {names} failed: {type(error).__name__}: {error}")
    wrapped.__cause__ = error
    return wrapped


def _dims(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape)
