"""Top shapes of Caffe's data layers, read as their DataLayerSetUp reads them.

Called by the builder (lowering/builder.py) for data-layer tops that `input_shapes=` does
not give.  Mirrors BVLC Caffe 1.0's src/caffe/layers/{data,image_data,hdf5_data,
memory_data,window_data}_layer.cpp, SegNet's dense_image_data_layer.cpp
(alexgkendall/caffe-segnet) and DataTransformer::InferBlobShape
(src/caffe/data_transformer.cpp): shapes come from the layer's parameters and the first
record Caffe reads (a Datum, an image's header, an HDF5 file's dataset shapes), no more.
"""
from __future__ import annotations

import importlib
import io
import os
from collections.abc import Callable, Generator, Mapping, Sequence
from types import ModuleType
from contextvars import ContextVar
from typing import Any

from google.protobuf.message import DecodeError

from ..errors import (CALLER, DataSourceError, InputError, MissingDependencyError,
                      NetDefinitionError, ShapeError)
from ..proto import caffe_pb2
from ._db import Cursor

Shape = tuple[int, ...]

DATA_LAYER_TYPES = frozenset({"Data", "ImageData", "HDF5Data", "MemoryData", "WindowData",
                              "DenseImageData"})

# EXIF orientations that turn the image a quarter: OpenCV (4.x, which Caffe links) applies
# them when it decodes JPEGs to colour or grey (imread, imdecode with flags 0 or 1), not
# when it decodes them unchanged (imdecode(-1), DecodeDatumToCVMatNative).
# True while a net that reads its batches is built (the pycaffe facade's Net, caffe_fx.Solver):
# their callers cannot give shapes instead, so data-layer errors do not suggest
# input_shapes= (or the CLI's --input-shape) there.
READS_BATCHES: ContextVar[bool] = ContextVar("caffe_fx_reads_batches", default=False)

_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112


class _Layer:
    """One data layer being shaped, and how its errors read."""

    def __init__(self, layer: caffe_pb2.LayerParameter, where: str,
                 advise: bool = True) -> None:
        self.layer = layer
        self.where = where
        self.advise = advise and not READS_BATCHES.get()
        self.who = f"{where}: layer '{layer.name}' ({layer.type})"

    def advice(self, lead: str = "; ") -> str:
        """What to do instead of reading the source: give input_shapes= (only where the
        shapes are all that is needed, not when the feed reads the batches)."""
        if not self.advise:
            return ""
        if CALLER.get() == "cli":
            flags = " ".join(f"--input-shape {t}={','.join(d)}" for t, d in self.hint_dims())
            return f"{lead}give the tops' shapes with {flags}"
        return f"{lead}give the tops' shapes with input_shapes={self.hint()}"

    def hint(self) -> str:
        """input_shapes= for this layer's tops, with the dims the prototxt fixes."""
        return "{" + ", ".join(f"'{t}': ({', '.join(d)}{',' if len(d) == 1 else ''})"
                               for t, d in self.hint_dims()) + "}"

    def hint_dims(self) -> list[tuple[str, list[str]]]:
        """Every top with its dims: the batch_size and crop_size (or ImageData's
        new_height x new_width) the prototxt sets, letters for what the source holds."""
        layer, kind = self.layer, self.layer.type
        param = {"Data": layer.data_param, "ImageData": layer.image_data_param,
                 "HDF5Data": layer.hdf5_data_param, "WindowData": layer.window_data_param,
                 "MemoryData": layer.memory_data_param,
                 "DenseImageData": layer.dense_image_data_param}.get(kind)
        batch = str(param.batch_size) if param is not None and param.batch_size > 0 else "N"
        if kind == "HDF5Data":
            return [(t, [batch, "..."]) for t in layer.top]
        crop = layer.transform_param.crop_size
        height, width = ("H", "W") if not crop else (str(crop), str(crop))
        if kind == "ImageData" and not crop and layer.image_data_param.new_height:
            height = str(layer.image_data_param.new_height)
            width = str(layer.image_data_param.new_width)
        if kind == "DenseImageData":  # the label is a map: (N, 1, H, W)
            dp = layer.dense_image_data_param
            if dp.crop_height:
                height, width = str(dp.crop_height), str(dp.crop_width)
            elif dp.new_height:
                height, width = str(dp.new_height), str(dp.new_width)
            return [(t, [batch, "C" if j == 0 else "1", height, width])
                    for j, t in enumerate(layer.top)]
        return [(t, [batch, "C", height, width] if j == 0 else [batch])
                for j, t in enumerate(layer.top)]

    def unreadable(self, field: str, value: str, problem: str) -> DataSourceError:
        where = "" if os.path.isabs(value) else f"; relative paths are read from the " \
            f"current folder, {os.getcwd()}, as Caffe reads them"
        return DataSourceError(
            f"{self.who} reads its data from files: {field} = '{value}' {problem}{where}"
            f"{self.advice()}{' instead' if self.advise else ''}")

    def invalid(self, message: str, cls: type[Exception] = NetDefinitionError) -> Exception:
        return cls(f"{self.who}: {message}")

    def need(self, module: str, package: str, what: str) -> ModuleType:
        try:
            return importlib.import_module(module)
        except ImportError as e:
            raise MissingDependencyError(
                f"{self.who}: reading {what} needs the '{package}' package, which is not "
                f"installed (pip install {package}, or pip install 'caffe_fx[data]')"
                f"{self.advice('; or ')}") from e


def data_top_shapes(layer: caffe_pb2.LayerParameter, where: str, *,
                    advise: bool = True) -> list[Shape]:
    """The shapes Caffe gives the tops of data layer `layer` at set-up, one per top.

    `where` names the prototxt in messages.  Relative paths are read from the current
    folder, as Caffe reads them.  Raises DataSourceError when a source cannot be read,
    NetDefinitionError/ShapeError where Caffe's set-up CHECKs fail.  `advise=False`
    leaves out the advice to give input_shapes= instead (the data feed needs the data)."""
    if layer.type not in _SHAPERS:
        raise ValueError(f"{layer.type} is not one of {sorted(DATA_LAYER_TYPES)}")
    ctx = _Layer(layer, where, advise)
    min_tops, max_tops, shaper = _SHAPERS[layer.type]
    _check_counts(ctx, min_tops, max_tops)
    return shaper(ctx)


# -- Python data layers (OICR's RoIDataLayer, FCN's VOCSegDataLayer) -----------------------

def python_top_shapes(layer: caffe_pb2.LayerParameter, given: Mapping[str, Sequence[int]],
                      where: str) -> list[Sequence[int]]:
    """The shapes of a Python layer without bottoms, whose tops become inputs: only the
    caller knows them (its setup/reshape would run user code), so every top must be in
    `given`; one InputError names every missing top, as the caller would write it."""
    who = f"{where}: layer '{layer.name}' (Python, python_param.module = " \
          f"'{layer.python_param.module}', layer = '{layer.python_param.layer}')"
    for top in layer.top:
        dims = given.get(top)
        if dims is not None and (isinstance(dims, (str, bytes)) or not hasattr(dims, "__iter__")):
            raise InputError(f"{where}: input_shapes['{top}'] = {dims!r}; allowed: a "
                             "sequence of ints such as (N, C, H, W)")
    missing = [top for top in layer.top if top not in given]
    if missing:
        if READS_BATCHES.get():
            how = "caffe_fx.pycaffe.Net runs it instead (as pycaffe does)"
        elif CALLER.get() == "cli":
            how = "give them with " + " ".join(f"--input-shape {t}=N,C,H,W" for t in missing)
        else:
            how = "give them with input_shapes={" + ", ".join(
                f"'{t}': (N, ...)" for t in missing) + "}"
        raise InputError(
            f"{who} is a data layer written in Python, which caffe_fx does not run here: its "
            f"tops become inputs, and the shapes of {', '.join(repr(t) for t in missing)} are "
            f"not given; {how}")
    return [given[top] for top in layer.top]


# -- Data (LMDB / LevelDB) ---------------------------------------------------------------

def _data(ctx: _Layer) -> list[Shape]:
    """DataLayer::DataLayerSetUp: the first Datum of the database, through InferBlobShape."""
    p = ctx.layer.data_param
    _check_transformer(ctx)
    value, what = _first_record(ctx)
    datum = caffe_pb2.Datum()
    try:
        datum.ParseFromString(value)
    except DecodeError as e:
        raise ctx.unreadable("data_param.source", p.source,
                             f"holds a first record that is not a Datum ({e})") from e
    shape = _datum_shape(ctx, datum, what)
    shapes = [(p.batch_size, *shape)]
    if len(ctx.layer.top) > 1:  # BaseDataLayer: a second top is the labels, (batch,)
        shapes.append((p.batch_size,))
    return shapes


def _first_record(ctx: _Layer) -> tuple[bytes, str]:
    """The value of the database's first key (Caffe's cursor SeekToFirst), and its name."""
    p = ctx.layer.data_param
    backend = caffe_pb2.DataParameter.DB.Name(p.backend)
    what = f"the first record of the {backend} at data_param.source = '{p.source}'"
    if not os.path.exists(p.source):
        raise ctx.unreadable("data_param.source", p.source,
                             f"does not exist (data_param.backend = {backend})")
    module, package = ("lmdb", "lmdb") if p.backend == caffe_pb2.DataParameter.LMDB \
        else ("plyvel", "plyvel")
    ctx.need(module, package, what)
    cursor = Cursor(p.source, p.backend, lambda problem, _: ctx.unreadable(
        "data_param.source", p.source, problem))
    try:
        value = cursor.item()[1] if cursor.valid else None
    finally:
        cursor.close()
    if value is None:
        raise ctx.unreadable("data_param.source", p.source, f"is an empty {backend}")
    return value, what


def _datum_shape(ctx: _Layer, datum: caffe_pb2.Datum, what: str) -> Shape:
    """DataTransformer::InferBlobShape(const Datum&): (C, H, W), cropped."""
    tp = ctx.layer.transform_param
    if datum.encoded:
        if tp.force_color and tp.force_gray:
            raise ctx.invalid("transform_param.force_color and force_gray are both set; "
                              "Caffe allows one of them (cannot set both)")
        image = _open_image(ctx, io.BytesIO(datum.data), what)
        with image:
            if tp.force_color or tp.force_gray:  # DecodeDatumToCVMat: imdecode(flags 1/0)
                channels = 3 if tp.force_color else 1
                height, width = _oriented_size(image)
            else:  # DecodeDatumToCVMatNative: imdecode(-1), the file's own channels
                channels = _native_channels(image)
                width, height = image.size
    else:
        channels, height, width = datum.channels, datum.height, datum.width
        if channels <= 0:
            raise ctx.invalid(f"{what} is a Datum with channels = {channels}; Caffe requires "
                              f"channels > 0", ShapeError)
    return _crop(ctx, channels, height, width, what)


# -- ImageData ---------------------------------------------------------------------------

def _image_data(ctx: _Layer) -> list[Shape]:
    """ImageDataLayer::DataLayerSetUp: the image of the source list's first line, read
    through ReadImageToCVMat (imread colour or grey, resized to new_height x new_width).

    With `shuffle` or `rand_skip`, Caffe starts from a random line; the first line's image
    is used here (the same shape whenever the list's images share one, or new_height and
    new_width or crop_size fix it)."""
    p = ctx.layer.image_data_param
    _check_transformer(ctx)
    if (p.new_height == 0) != (p.new_width == 0):
        raise ctx.invalid(f"image_data_param.new_height = {p.new_height} and new_width = "
                          f"{p.new_width}: Caffe requires both set (> 0) or neither")
    line = _first_line(ctx, "image_data_param.source", p.source)
    # Caffe splits each line at its last space: "<file> <label>"
    space = line.rfind(" ")
    path = p.root_folder + (line[:space] if space >= 0 else line)
    height, width, what = _first_listed(ctx, "image_data_param", p.source, path, "image")
    if p.new_height:
        height, width = p.new_height, p.new_width
    shape = _crop(ctx, 3 if p.is_color else 1, height, width, what)
    _positive_batch(ctx, "image_data_param", p.batch_size, "Caffe")
    return [(p.batch_size, *shape), (p.batch_size,)]


def _first_listed(ctx: _Layer, field: str, source: str, path: str, what: str
                  ) -> tuple[int, int, str]:
    """(height, width, description) of the `what` ('image', 'label') at `path`, which the
    first line of `field`.source names; unreadable, the list is named as the culprit."""
    where = (f"the {what} '{path}' ({field}.root_folder + the first line of {field}.source "
             f"= '{source}')")
    try:
        image = _open_image(ctx, path, where)
    except DataSourceError as e:
        raise ctx.unreadable(f"{field}.source", source, f"lists first the {what} '{path}', "
                             f"which cannot be read ({e.__cause__ or e})") from e
    with image:
        height, width = _oriented_size(image)
    return height, width, where


def _positive_batch(ctx: _Layer, field: str, batch_size: int, who: str) -> None:
    if batch_size <= 0:
        raise ctx.invalid(f"{field}.batch_size = {batch_size}; {who} requires a positive "
                          f"batch size")


# -- DenseImageData (SegNet) ------------------------------------------------------------

def _dense_image_data(ctx: _Layer) -> list[Shape]:
    """DenseImageDataLayer::DataLayerSetUp (alexgkendall/caffe-segnet): the first pair of
    the source list, "image label" words; the image read colour or grey and the label
    grey, both resized to new_height x new_width; (batch, C, H, W) and (batch, 1, H, W),
    H x W cropped to crop_height x crop_width.

    With `shuffle` or `rand_skip`, the fork starts from a random pair; the first one is
    used here (the same shape whenever the list's images share one)."""
    p = ctx.layer.dense_image_data_param
    check_dense_params(ctx.layer, ctx.who)
    _check_transformer(ctx)
    pair = first_dense_pair(ctx, p.source)
    shapes = [_first_listed(ctx, "dense_image_data_param", p.source, p.root_folder + path,
                            what)[:2] for path, what in zip(pair, ("image", "label"))]
    height, width = shapes[0]
    if p.new_height:
        height, width = p.new_height, p.new_width
    elif shapes[1] != shapes[0]:
        raise ctx.invalid(f"the first image of dense_image_data_param.source = '{p.source}' "
                          f"is {shapes[0][0]} x {shapes[0][1]} but its label "
                          f"{shapes[1][0]} x {shapes[1][1]} (height x width); the fork "
                          f"requires them equal (Input and label image heights and widths "
                          f"must match)", ShapeError)
    if p.crop_height and (p.crop_height > height or p.crop_width > width):
        raise ctx.invalid(f"dense_image_data_param.crop_height = {p.crop_height} and "
                          f"crop_width = {p.crop_width} exceed the first image's {height} x "
                          f"{width} (height x width); allowed: at most its size", ShapeError)
    _positive_batch(ctx, "dense_image_data_param", p.batch_size, "the fork")
    if p.crop_height:
        height, width = p.crop_height, p.crop_width
    return [(p.batch_size, 3 if p.is_color else 1, height, width),
            (p.batch_size, 1, height, width)]


def check_dense_params(layer: caffe_pb2.LayerParameter, who: str) -> None:
    """The CHECKs of the fork's DataLayerSetUp and InternalThreadEntry on the params."""
    p, tp = layer.dense_image_data_param, layer.transform_param
    if (p.new_height == 0) != (p.new_width == 0):
        raise NetDefinitionError(
            f"{who}: dense_image_data_param.new_height = {p.new_height} and new_width = "
            f"{p.new_width}; the fork requires both set (> 0) or neither (Current "
            f"implementation requires new_height and new_width to be set at the same time)")
    if (p.crop_height == 0) != (p.crop_width == 0):
        raise NetDefinitionError(
            f"{who}: dense_image_data_param.crop_height = {p.crop_height} and crop_width = "
            f"{p.crop_width}; the fork requires both set (> 0) or neither")
    if tp.mirror or tp.crop_size:
        raise NetDefinitionError(
            f"{who}: transform_param.mirror = {str(tp.mirror).lower()}, crop_size = "
            f"{tp.crop_size}: the fork aborts on them (FIXME: Any stochastic transformation "
            f"will break layer); allowed: dense_image_data_param.mirror, crop_height and "
            f"crop_width, which move the image and its label together")
    if p.HasField("mean_file"):
        raise NetDefinitionError(
            f"{who}: dense_image_data_param.mean_file = '{p.mean_file}' is never read by the "
            f"fork's layer; allowed: transform_param.mean_file or mean_value")


def first_dense_pair(ctx: _Layer, source: str) -> tuple[str, str]:
    words = _tokens(ctx, "dense_image_data_param.source", source)
    pair = next(words, None), next(words, None)
    words.close()
    if pair[1] is None:
        raise ctx.unreadable("dense_image_data_param.source", source,
                             "lists no \"image label\" pair")
    return pair[0], pair[1]  # type: ignore[return-value]


# -- HDF5Data ----------------------------------------------------------------------------

def _hdf5_data(ctx: _Layer) -> list[Shape]:
    """HDF5DataLayer::LayerSetUp: the first file of the source list; each top is its
    dataset of the same name, dim 0 replaced by batch_size.

    With `shuffle`, Caffe starts from a random file; the first one is used here."""
    import h5py

    layer, p = ctx.layer, ctx.layer.hdf5_data_param
    if layer.HasField("transform_param"):
        raise ctx.invalid("transform_param is set, but HDF5Data does not transform data "
                          "(Caffe refuses it)")
    words = _tokens(ctx, "hdf5_data_param.source", p.source)
    first = next(words, None)
    words.close()
    if first is None:
        raise ctx.unreadable("hdf5_data_param.source", p.source,
                             "lists no HDF5 file (Caffe needs at least 1 filename)")
    try:
        f = h5py.File(first, "r")
    except OSError as e:
        raise ctx.unreadable("hdf5_data_param.source", p.source,
                             f"lists first the HDF5 file '{first}', which cannot be opened "
                             f"({e})") from e
    with f:
        names = set(f.keys())  # H5LTfind_dataset looks in the root group only
        dims: list[tuple[int, ...]] = []
        for top in layer.top:
            ds = f.get(top) if top in names else None
            if not isinstance(ds, h5py.Dataset):
                raise ctx.unreadable("hdf5_data_param.source", p.source,
                                     f"lists first '{first}', which has no dataset '{top}' "
                                     f"(each top reads the dataset named after it; it has: "
                                     f"{sorted(names)})")
            kind = ds.id.get_type().get_class()
            if kind not in (h5py.h5t.FLOAT, h5py.h5t.INTEGER):
                raise ctx.invalid(f"dataset '{top}' of '{first}' (first file of "
                                  f"hdf5_data_param.source) holds {ds.dtype} values; Caffe "
                                  f"reads float and integer datasets only", ShapeError)
            if ds.ndim < 1:
                raise ctx.invalid(f"dataset '{top}' of '{first}' is a scalar; Caffe needs "
                                  f"at least 1 axis", ShapeError)
            dims.append(tuple(int(d) for d in ds.shape))
    for top, d in zip(layer.top[1:], dims[1:]):
        if d[0] != dims[0][0]:
            raise ctx.invalid(f"dataset '{top}' of '{first}' has {d[0]} rows but "
                              f"'{layer.top[0]}' has {dims[0][0]}; Caffe requires every "
                              f"dataset to have as many", ShapeError)
    return [(p.batch_size, *d[1:]) for d in dims]


# -- MemoryData, WindowData ----------------------------------------------------------------

def _memory_data(ctx: _Layer) -> list[Shape]:
    """MemoryDataLayer::DataLayerSetUp: (batch, C, H, W) and (batch,), from the params."""
    p = ctx.layer.memory_data_param
    _check_transformer(ctx)
    if p.batch_size * p.channels * p.height * p.width <= 0:
        raise ctx.invalid(f"memory_data_param batch_size = {p.batch_size}, channels = "
                          f"{p.channels}, height = {p.height}, width = {p.width}; Caffe "
                          f"requires all four specified and positive")
    return [(p.batch_size, p.channels, p.height, p.width), (p.batch_size,)]


def _window_data(ctx: _Layer) -> list[Shape]:
    """WindowDataLayer::DataLayerSetUp: (batch, C, crop, crop) and (batch,), C being the
    channels the window file gives its last image (Caffe keeps the last one it reads).

    The window file is text (no image is opened, also with cache_images, which would read
    every image file)."""
    p, tp = ctx.layer.window_data_param, ctx.layer.transform_param
    _check_transformer(ctx)
    field = "window_data_param.source"
    tokens = _tokens(ctx, field, p.source)

    def take(what: str, image: int) -> str:
        tok = next(tokens, None)
        if tok is None:
            raise ctx.unreadable(field, p.source, f"ends inside the entry of image {image} "
                                 f"(before its {what})")
        return tok

    def integer(what: str, image: int) -> int:
        tok = take(what, image)
        try:
            return int(tok)
        except ValueError:
            raise ctx.unreadable(field, p.source, f"has '{tok}' for the {what} of image "
                                 f"{image}, not an integer") from None

    # "# image_index / path / channels height width / num_windows / windows..."
    hashtag, count, channels = next(tokens, None), 0, 0
    if hashtag is None:
        raise ctx.unreadable(field, p.source, "is empty (Caffe: Window file is empty)")
    while hashtag is not None:
        take("image index", count)
        if hashtag != "#":
            raise ctx.unreadable(field, p.source, f"has '{hashtag}' where image {count}'s "
                                 f"entry should start with '#'")
        take("path", count)
        channels = integer("channels", count)
        integer("height", count)
        integer("width", count)
        for _ in range(6 * integer("window count", count)):  # class overlap x1 y1 x2 y2
            take("windows", count)
        count += 1
        hashtag = next(tokens, None)
    if tp.crop_size <= 0:
        raise ctx.invalid(f"transform_param.crop_size = {tp.crop_size}; WindowData crops "
                          f"every window to crop_size x crop_size and requires it > 0")
    if len(tp.mean_value) not in (0, 1, channels):
        raise ctx.invalid(f"transform_param has {len(tp.mean_value)} mean_value for "
                          f"{channels} channels; Caffe requires 1 or one per channel")
    return [(p.batch_size, channels, tp.crop_size, tp.crop_size), (p.batch_size,)]


_SHAPERS: dict[str, tuple[int, int | None, Callable[[_Layer], list[Shape]]]] = {
    # Layer::CheckBlobCounts bounds of each type: (MinTopBlobs, MaxTopBlobs)
    "Data": (1, 2, _data),
    "ImageData": (2, 2, _image_data),
    "HDF5Data": (1, None, _hdf5_data),
    "MemoryData": (2, 2, _memory_data),
    "WindowData": (2, 2, _window_data),
    "DenseImageData": (2, 2, _dense_image_data),
}


# -- shared --------------------------------------------------------------------------------

def _check_counts(ctx: _Layer, lo: int, hi: int | None) -> None:
    layer = ctx.layer
    if layer.bottom:
        raise ctx.invalid(f"has {len(layer.bottom)} bottoms; a data layer takes none")
    n = len(layer.top)
    if n < lo or (hi is not None and n > hi):
        allowed = f"exactly {lo}" if lo == hi else (f"at least {lo}" if hi is None
                                                    else f"{lo} to {hi}")
        raise ctx.invalid(f"has {n} tops; allowed: {allowed}")


def _check_transformer(ctx: _Layer) -> None:
    """DataTransformer's constructor (BaseDataLayer's layers).  The mean file itself is
    not read: it does not change the shapes."""
    tp = ctx.layer.transform_param
    if tp.HasField("mean_file") and len(tp.mean_value):
        raise ctx.invalid("transform_param sets both mean_file and mean_value; Caffe "
                          "allows one of them")


def _crop(ctx: _Layer, channels: int, height: int, width: int, what: str) -> Shape:
    crop = ctx.layer.transform_param.crop_size
    if crop and (height < crop or width < crop):
        raise ctx.invalid(f"transform_param.crop_size = {crop} is larger than {what}, "
                          f"{height} x {width} (height x width); Caffe requires crop_size "
                          f"<= both", ShapeError)
    return (channels, crop or height, crop or width)


def _open_image(ctx: _Layer, source: str | io.BytesIO, what: str) -> Any:
    """Pillow's lazy open: the header only, no pixels decoded."""
    pil = ctx.need("PIL.Image", "pillow", what)
    try:
        return pil.open(source)
    except (OSError, pil.DecompressionBombError) as e:
        raise DataSourceError(f"{ctx.who}: {what} cannot be decoded as an image ({e})"
                              f"{ctx.advice()}") from e


def _oriented_size(image: Any) -> tuple[int, int]:
    """(height, width) after the EXIF orientation OpenCV applies when decoding a JPEG to
    colour or grey (imread in ImageData, imdecode for forced colour/grey datums)."""
    width, height = image.size
    if image.format == "JPEG":
        try:
            orientation = image.getexif().get(_EXIF_ORIENTATION)
        except Exception:  # noqa: BLE001 - OpenCV, too, ignores EXIF it cannot parse
            orientation = None
        if orientation in _QUARTER_TURNS:
            return width, height
    return height, width


def _native_channels(image: Any) -> int:
    """The channels cv::imdecode(-1) gives a file: OpenCV's PNG decoder makes grey+alpha,
    RGBA and any tRNS transparency on palette or RGB images 4 channels, grey 1; its JPEG
    decoder gives 1 or 3 (CMYK too).  Other formats follow Pillow's mode."""
    mode = image.mode
    if mode in ("1", "L", "I", "F") or mode.startswith("I;"):
        return 1
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        return 4
    if image.format == "PNG" and mode in ("P", "RGB") and "transparency" in image.info:
        return 4
    return 3


def _first_line(ctx: _Layer, field: str, path: str) -> str:
    """std::getline's first line (only '\\n' ends it); the file must have one."""
    try:
        with open(path, "rb") as f:
            raw = f.readline()
    except OSError as e:
        raise ctx.unreadable(field, path, f"cannot be opened ({e.strerror or e})") from e
    if not raw:
        raise ctx.unreadable(field, path, "is empty (Caffe: File is empty)")
    return os.fsdecode(raw[:-1] if raw.endswith(b"\n") else raw)


def _tokens(ctx: _Layer, field: str, path: str) -> Generator[str, None, None]:
    """The whitespace-separated words of a file, read as `ifstream >> string` reads them,
    a chunk at a time."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - _words closes it
    except OSError as e:
        raise ctx.unreadable(field, path, f"cannot be opened ({e.strerror or e})") from e
    return _words(f)


def _words(f: io.BufferedReader) -> Generator[str, None, None]:
    with f:
        pending = b""
        while chunk := f.read(1 << 16):
            words = (pending + chunk).split()
            pending = words.pop() if words and not chunk[-1:].isspace() else b""
            yield from (os.fsdecode(w) for w in words)
        if pending:
            yield os.fsdecode(pending)
