"""Reading NetParameter: prototxt text, binary caffemodels and HDF5 caffemodels.

Frontend, first step: file -> NetParameter (upgraded from V0/V1 by upgrade.py) and
caffemodel -> per-layer weight arrays.  Mirrors src/caffe/util/io.cpp
(ReadNetParamsFromTextFileOrDie / ...BinaryFileOrDie), Blob::FromProto in
src/caffe/blob.cpp; binary caffemodels are walked by wire.py, HDF5 ones read by
hdf5.py (Net::CopyTrainedLayersFromHDF5's layout).
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from typing import Union

import numpy as np
from google.protobuf import message as _message
from google.protobuf import text_format

from ..errors import InputError, ProtoParseError, UnusedWeightsWarning, WeightsError, spelled
from ..proto import caffe_pb2
from .files import check_file, max_text_bytes
from .hdf5 import is_hdf5, read_hdf5
from .upgrade import upgrade_net
from .wire import read_caffemodel, text_message

NetSource = Union[str, os.PathLike, caffe_pb2.NetParameter]


def describe(source: NetSource) -> str:
    """How error messages name a net: its path, or a placeholder for text/messages.
    Anything else is refused here, where every reader of a net starts."""
    if not isinstance(source, (str, os.PathLike, _message.Message)):
        raise InputError(f"the net is given as {type(source).__name__}; allowed: a "
                         "prototxt path (str or os.PathLike), prototxt text or a "
                         "caffe_pb2.NetParameter")
    if isinstance(source, caffe_pb2.NetParameter):
        return "<NetParameter>"
    if isinstance(source, os.PathLike) or is_path(os.fspath(source)):
        return os.fspath(source)
    return "<prototxt string>"


def is_path(s: str) -> bool:
    # Prototxt text always has a newline, a brace or a colon-separated field.
    return "\n" not in s and "{" not in s and not re.match(r"^\s*\w+\s*:", s)


def parse_text(text: str, where: str, message: _message.Message | None = None,
               unknown: list[str] | None = None) -> _message.Message:
    """Text-format protobuf with errors as `file:line:column: what`.

    Every field the schema lacks is found in one parse: with `unknown` given they are
    appended to it (`file:line:column: Message has no field 'name'`) and skipped; without
    it, one ProtoParseError lists them all."""
    msg = message if message is not None else caffe_pb2.NetParameter()
    found: list[str] = []
    try:
        _LenientParser(found, where).merge(text, msg)
    except text_format.ParseError as e:
        raise ProtoParseError(_located(e, where)) from e
    if found:
        other = _other_kind(text, msg)
        if other is not None:
            raise ProtoParseError(f"{where}: {other}")
    if found and unknown is None:
        raise ProtoParseError(unknown_fields_message(where, found))
    if unknown is not None:
        unknown.extend(found)
    return msg


def _other_kind(text: str, msg: _message.Message) -> str | None:
    """What to say when a file read as a net is a solver, or one read as a solver is a net:
    every field it has is the other message's (checked by parsing it as that one)."""
    if not isinstance(msg, (caffe_pb2.NetParameter, caffe_pb2.SolverParameter)):
        return None
    other = text_message(text)
    if other is None or isinstance(other, type(msg)):
        return None
    if isinstance(other, caffe_pb2.SolverParameter):
        nets = [f"{f} = {getattr(other, f)!r}" for f in ("net", "train_net")
                if other.HasField(f)]
        nets += [f"test_net = {v!r}" for v in other.test_net]
        named = f" (it names {', '.join(nets)})" if nets else ""
        return ("this is a solver prototxt (every field in it is SolverParameter's), not a "
                f"net{named}; give the net's prototxt here, or train with the solver: "
                + spelled("caffe_fx.Solver(solver) or caffe.get_solver(solver)",
                          "caffe-fx train --solver SOLVER"))
    return ("this is a net prototxt (every field in it is NetParameter's), not a solver; "
            "a solver file names it in its `net:` field (with base_lr, lr_policy, max_iter, "
            "...)")


def unknown_fields_message(where: str, found: list[str]) -> str:
    return (f"{where}: {len(found)} field(s) that neither Caffe's schema nor the forks "
            "caffe_fx bundles (caffe_fx/proto/dialects.proto) define:\n"
            + "\n".join(f"  {line}" for line in found)
            + "\nA net written for another fork: pass its caffe.proto as "
            + spelled("caffe_proto= (the CLI's --caffe-proto)", "--caffe-proto"))


def _located(e: text_format.ParseError, where: str) -> str:
    line, col = getattr(e, "_line", None), getattr(e, "_column", None)
    detail = str(e)
    m = re.match(r"^(\d+):(\d+) : (.*)$", detail, re.S)
    if m:
        line, col, detail = int(m.group(1)), int(m.group(2)), m.group(3)
    loc = f"{where}:{line}:{col}" if line is not None else where
    return f"{loc}: {detail}"


class _LenientParser(text_format._Parser):  # type: ignore[misc]  # noqa: SLF001
    """protobuf's text parser, skipping (and recording) fields the schema lacks.

    protobuf calls _SkipFieldContents exactly for a field it does not know when
    allow_unknown_field is set; the record names where and in which message."""

    def __init__(self, found: list[str], where: str) -> None:
        super().__init__(allow_unknown_extension=False, allow_field_number=False,
                         allow_unknown_field=True)
        self._found = found
        self._where = where
        self._skipping = False  # inside an unknown field's braces: not recorded again

    def merge(self, text: str, msg: _message.Message) -> None:
        self.MergeLines(text.split("\n"), msg)

    def _SkipFieldContents(self, tokenizer, field_name, immediate_message_type):  # noqa: N802
        if self._skipping:
            return super()._SkipFieldContents(tokenizer, field_name, immediate_message_type)
        self._found.append(f"{self._where}:{tokenizer._previous_line + 1}:"  # noqa: SLF001
                           f"{tokenizer._previous_column + 1}: {immediate_message_type} "
                           f"has no field '{field_name}'")
        self._skipping = True
        try:
            return super()._SkipFieldContents(tokenizer, field_name, immediate_message_type)
        finally:
            self._skipping = False


def read_net(source: NetSource, caffe_proto: str | os.PathLike | None = None,
             unknown: list[str] | None = None) -> caffe_pb2.NetParameter:
    """A prototxt path, a prototxt string or a NetParameter -> upgraded NetParameter.

    The caller's message is never modified.  Legacy V0/V1 nets are upgraded as Caffe's
    file readers do (a NetParameter given directly is upgraded too, for convenience).
    Text is read with the bundled schema, which has the fork fields of dialects.proto;
    `caffe_proto` names another fork's caffe.proto to parse it with (fork_proto.py), whose
    fields are then carried over by name.  Fields neither schema knows are all reported
    in one ProtoParseError, or, with `unknown` given, appended to it and skipped (the
    pipeline reports them with the net's other problems).
    """
    where = describe(source)
    if caffe_proto is not None and not isinstance(source, _message.Message):
        from .fork_proto import carry_by_name, fork_net_parameter

        fork = parse_text(_read_text(source, where),
                          where, fork_net_parameter(os.fspath(caffe_proto))())
        net = caffe_pb2.NetParameter()
        carry_by_name(fork, net, where, os.fspath(caffe_proto))
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
        net = parse_text(text, where, unknown=unknown)
    return upgrade_net(net, where)


def _read_text(source: str | os.PathLike, where: str) -> str:
    s = os.fspath(source)
    if isinstance(source, os.PathLike) or is_path(s):
        if s and not os.path.lexists(s):
            raise ProtoParseError(
                f"{where}: no such prototxt file (a path, prototxt text, or a NetParameter "
                "is allowed)")
        path = check_file(s, "prototxt", ProtoParseError, max_bytes=max_text_bytes())
        try:
            return path.read_text()
        except UnicodeDecodeError as e:
            raise ProtoParseError(
                f"{where}: not a text prototxt (binary data; is it a .caffemodel? pass it "
                f"{spelled('as weights=', 'as WEIGHTS, after the prototxt')})") from e
        except OSError as e:
            raise ProtoParseError(f"{where}: cannot read the prototxt: {e}") from e
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


@dataclass(frozen=True)
class StoredWeights:
    """A weights file as the binder (binding.py) takes it: {layer: blobs}, None where an
    HDF5 file has no dataset (a param the layer shares from an earlier layer), and whether
    CopyTrainedLayersFromHDF5's rules apply (fewer datasets allowed for shared params)."""

    layers: dict[str, list[StoredBlob | None]]
    hdf5: bool


def read_stored(path: str | os.PathLike, *, mmap: bool | None = None) -> StoredWeights:
    """caffemodel (binary, any legacy format) or HDF5 caffemodel -> StoredWeights.

    Order of layers is the file's; a layer name seen twice keeps its last entry, as
    CopyTrainedLayersFrom copies every source layer in turn (the last copy stays; checked
    with the oracle), with an UnusedWeightsWarning naming the layers.  A binary file is
    mapped or read once (wire.py) and the arrays are writable views of it: no per-value
    conversion, no second copy.  `mmap`:
    True maps the file copy-on-write, False reads it, None (default) maps files of
    16 MiB or more unless CAFFE_FX_MMAP says otherwise (frontend/mapped.py).
    """
    p = check_file(path, "caffemodel", WeightsError)
    if is_hdf5(p):
        return StoredWeights({name: [None if a is None else StoredBlob(a, False) for a in blobs]
                              for name, blobs in read_hdf5(p, mmap=mmap).items()}, hdf5=True)
    out: dict[str, list[StoredBlob | None]] = {}
    repeated: dict[str, int] = {}
    for layer in read_caffemodel(p, mmap=mmap):
        if layer.name in out:
            repeated[layer.name] = repeated.get(layer.name, 1) + 1
        out[layer.name] = [StoredBlob(b.data.reshape(b.shape), b.legacy) for b in layer.blobs]
    if repeated:
        named = ", ".join(f"'{n}' ({k} times)" for n, k in repeated.items())
        warnings.warn(f"{p}: holds layers more than once: {named}; Caffe copies each in "
                      "turn, so the last one's blobs are used", UnusedWeightsWarning,
                      stacklevel=2)
    return StoredWeights(out, hdf5=False)


def read_weights(path: str | os.PathLike) -> dict[str, list[StoredBlob]]:
    """read_stored's layers, every blob present: {layer: blobs in Caffe's order}.  An HDF5
    layer without a dataset below its last one (a shared param) is an error here: only
    a net that knows which params are shared can bind it (binding.py)."""
    stored = read_stored(path)
    out: dict[str, list[StoredBlob]] = {}
    for name, blobs in stored.layers.items():
        missing = [i for i, b in enumerate(blobs) if b is None]
        if missing:
            raise WeightsError(
                f"{path}: /data/{name} has no dataset {missing[0]} (a param that layer "
                "shares with an earlier one); load it into the net it was saved from "
                "(compile(prototxt, weights) or caffe_fx.pycaffe's Net.load_hdf5)")
        out[name] = [b for b in blobs if b is not None]
    return out
