"""Reading NetParameter: prototxt text, binary caffemodels and HDF5 caffemodels.

Frontend, first step: file -> NetParameter (upgraded from V0/V1 by upgrade.py) and
caffemodel -> per-layer weight arrays.  Mirrors src/caffe/util/io.cpp
(ReadNetParamsFromTextFileOrDie / ...BinaryFileOrDie), Blob::FromProto in
src/caffe/blob.cpp and Net::CopyTrainedLayersFromHDF5 in src/caffe/net.cpp; binary
caffemodels are walked by wire.py.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from google.protobuf import message as _message
from google.protobuf import text_format

from ..errors import ProtoParseError, WeightsError
from ..proto import caffe_pb2
from .upgrade import upgrade_net
from .wire import read_caffemodel

NetSource = Union[str, os.PathLike, caffe_pb2.NetParameter]


def describe(source: NetSource) -> str:
    """How error messages name a net: its path, or a placeholder for text/messages."""
    if isinstance(source, caffe_pb2.NetParameter):
        return "<NetParameter>"
    if isinstance(source, os.PathLike) or _is_path(os.fspath(source)):
        return os.fspath(source)
    return "<prototxt string>"


def _is_path(s: str) -> bool:
    # Prototxt text always has a newline, a brace or a colon-separated field.
    return "\n" not in s and "{" not in s and not re.match(r"^\s*\w+\s*:", s)


def parse_text(text: str, where: str, message: _message.Message | None = None) -> _message.Message:
    """Text-format protobuf with errors as `file:line:column: what`."""
    msg = message if message is not None else caffe_pb2.NetParameter()
    try:
        text_format.Merge(text, msg)
    except text_format.ParseError as e:
        line, col = getattr(e, "_line", None), getattr(e, "_column", None)
        detail = str(e)
        m = re.match(r"^(\d+):(\d+) : (.*)$", detail, re.S)
        if m:
            line, col, detail = int(m.group(1)), int(m.group(2)), m.group(3)
        loc = f"{where}:{line}:{col}" if line is not None else where
        raise ProtoParseError(f"{loc}: {detail}") from e
    return msg


def read_net(source: NetSource, caffe_proto: str | os.PathLike | None = None
             ) -> caffe_pb2.NetParameter:
    """A prototxt path, a prototxt string or a NetParameter -> upgraded NetParameter.

    The caller's message is never modified.  Legacy V0/V1 nets are upgraded as Caffe's
    file readers do (a NetParameter given directly is upgraded too, for convenience).
    `caffe_proto` names a fork's caffe.proto to parse the text with (fork_proto.py).
    """
    where = describe(source)
    if caffe_proto is not None and not isinstance(source, _message.Message):
        from .fork_proto import fork_net_parameter

        fork = parse_text(_read_text(source, where),
                          where, fork_net_parameter(os.fspath(caffe_proto))())
        net = caffe_pb2.NetParameter()
        net.ParseFromString(fork.SerializeToString())
        return upgrade_net(net, where)
    if isinstance(source, caffe_pb2.NetParameter):
        net = caffe_pb2.NetParameter()
        net.CopyFrom(source)
    elif isinstance(source, _message.Message):
        raise ProtoParseError(
            f"{where}: a {type(source).__name__} from another caffe_pb2 was given; pass a "
            "path, prototxt text, or a caffe_fx.proto.caffe_pb2.NetParameter "
            "(NetParameter().ParseFromString(msg.SerializeToString()) converts it)")
    else:
        text = _read_text(source, where)
        net = parse_text(text, where)
    return upgrade_net(net, where)


def _read_text(source: str | os.PathLike, where: str) -> str:
    s = os.fspath(source)
    if isinstance(source, os.PathLike) or _is_path(s):
        path = Path(s)
        if not path.exists():
            raise ProtoParseError(
                f"{where}: no such prototxt file (a path, prototxt text, or a NetParameter "
                "is allowed)")
        try:
            return path.read_text()
        except UnicodeDecodeError as e:
            raise ProtoParseError(
                f"{where}: not a text prototxt (binary data; is it a .caffemodel? pass it "
                "as weights=)") from e
    return s


@dataclass(frozen=True)
class StoredBlob:
    """One weight blob from a caffemodel; `legacy` when stored with num/channels/height/width."""

    array: np.ndarray
    legacy: bool


def blob_to_array(blob: caffe_pb2.BlobProto, where: str) -> StoredBlob:
    """Blob::FromProto: the legacy 4-D shape wins if any of its fields is set;
    `double_data` wins over `data` when non-empty."""
    legacy = any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
    shape = (blob.num, blob.channels, blob.height, blob.width) if legacy \
        else tuple(blob.shape.dim)
    data = blob.double_data if len(blob.double_data) else blob.data
    arr = np.asarray(data, dtype=np.float32)
    count = int(np.prod(shape, dtype=np.int64))
    if arr.size != count:
        raise WeightsError(
            f"{where}: blob of shape {list(shape)} holds {arr.size} values; expected {count}")
    return StoredBlob(arr.reshape(shape), legacy)


def read_weights(path: str | os.PathLike) -> dict[str, list[StoredBlob]]:
    """caffemodel (binary, any legacy format) or HDF5 caffemodel -> {layer: blobs}.

    Order of layers is the file's; a layer name seen twice keeps its first entry, as
    Caffe matches the first.  A binary file is read once (wire.py) and the arrays are
    writable views of that one buffer: no per-value conversion, no second copy.
    """
    p = Path(path)
    if not p.exists():
        raise WeightsError(f"{p}: no such weights file")
    with open(p, "rb") as f:
        head = f.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        return _read_hdf5(p)
    out: dict[str, list[StoredBlob]] = {}
    for layer in read_caffemodel(p):
        if layer.name not in out:
            out[layer.name] = [StoredBlob(b.data.reshape(b.shape), b.legacy)
                               for b in layer.blobs]
    return out


def _read_hdf5(p: Path) -> dict[str, list[StoredBlob]]:
    import h5py

    out: dict[str, list[StoredBlob]] = {}
    try:
        with h5py.File(p, "r") as f:
            if "data" not in f:
                raise WeightsError(f"{p}: HDF5 file without the /data group of a caffemodel")
            group = f["data"]
            for name in group:
                layer = group[name]
                try:
                    keys = sorted(layer.keys(), key=int)
                except ValueError as e:
                    raise WeightsError(f"{p}: /data/{name} holds datasets not named by "
                                       f"blob index 0, 1, ...: {sorted(layer.keys())}") from e
                out[name] = [_read_dataset(layer[k], p) for k in keys]
    except (OSError, KeyError, TypeError) as e:
        raise WeightsError(f"{p}: unreadable HDF5 caffemodel: {e}") from e
    return out


def _read_dataset(ds, p: Path) -> StoredBlob:
    """hdf5_load_nd_dataset: straight into the final float32 array (HDF5 converts)."""
    if not hasattr(ds, "read_direct"):
        raise WeightsError(f"{p}: {ds.name} is a group where a blob dataset belongs")
    arr = np.empty(ds.shape, dtype=np.float32)
    if arr.size:
        ds.read_direct(arr)
    return StoredBlob(arr, False)
