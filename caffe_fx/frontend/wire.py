"""The protobuf wire format of binary caffemodels, read and written at the speed of the disk.

Frontend, used by read.py's read_weights (and, for writing, weights_io.py's
save_caffemodel): the file mapped copy-on-write (mapped.py; small files read into one
writable buffer), then a walk over NetParameter's layers (V2 `layer`, V1 `layers`, V0 `layers.layer`) that
turns every BlobProto's packed `data` into a NumPy view of that buffer instead of a list
of Python floats.  The rest of the net (names, types, params) is parsed by caffe_pb2 from
a copy of the bytes without the blobs' data and upgraded by upgrade.py, so legacy names
and types mean what they mean to Caffe (ReadNetParamsFromBinaryFileOrDie in
src/caffe/util/io.cpp, Blob::FromProto in src/caffe/blob.cpp).  Writing streams a
NetParameter whose blobs' float data goes to the file straight from the arrays (Net::ToProto
+ WriteProtoToBinaryFile, Blob::ToProto).  Field numbers are caffe_pb2's, never restated.
"""
from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import numpy as np
from google.protobuf import message as _message

from ..errors import WeightsError, spelled
from ..proto import caffe_pb2
from . import mapped
from .upgrade import upgrade_net

__all__ = ["WireBlob", "WireLayer", "read_caffemodel", "varint_bytes", "write_caffemodel"]


def _numbers(message: type, *names: str) -> tuple[int, ...]:
    fields = message.DESCRIPTOR.fields_by_name  # type: ignore[attr-defined]
    return tuple(fields[n].number for n in names)


# Field numbers in caffe.proto, from the generated descriptors.
_NET_LAYER, _NET_LAYERS = _numbers(caffe_pb2.NetParameter, "layer", "layers")  # V2 / V1
_V2_NAME, _V2_BLOBS = _numbers(caffe_pb2.LayerParameter, "name", "blobs")
_V1_V0LAYER, _V1_NAME, _V1_BLOBS = _numbers(caffe_pb2.V1LayerParameter, "layer", "name", "blobs")
_V0_NAME, _V0_BLOBS = _numbers(caffe_pb2.V0LayerParameter, "name", "blobs")
_BLOB_LEGACY = _numbers(caffe_pb2.BlobProto, "num", "channels", "height", "width")
_BLOB_DATA, _BLOB_SHAPE, _BLOB_DOUBLE_DATA, _BLOB_DOUBLE_DIFF = _numbers(
    caffe_pb2.BlobProto, "data", "shape", "double_data", "double_diff")
(_SHAPE_DIM,) = _numbers(caffe_pb2.BlobShape, "dim")

_VARINT, _FIXED64, _LEN, _START_GROUP, _END_GROUP, _FIXED32 = 0, 1, 2, 3, 4, 5
_MAX_DEPTH = 100  # protobuf's default recursion limit, for groups in unknown fields
_LITTLE = sys.byteorder == "little"
_Field = tuple[int, int, int, int, int]  # number, wire type, start, value start, end


@dataclass(frozen=True)
class WireBlob:
    """One BlobProto: its shape (Blob::FromProto's choice) and its values, flat float32.

    `legacy` when any of num/channels/height/width is set (then shape is those four);
    `data` is a view of the file's buffer for packed float data, a new array otherwise
    (double_data converted, unpacked or split repeated floats joined)."""

    shape: tuple[int, ...]
    legacy: bool
    data: np.ndarray
    offset: int  # where the BlobProto starts in the file


@dataclass(frozen=True)
class WireLayer:
    """A layer of the upgraded net, in file order: its name, type and stored blobs."""

    name: str
    type: str
    blobs: tuple[WireBlob, ...]


class _Corrupt(Exception):
    def __init__(self, offset: int, what: str) -> None:
        super().__init__(what)
        self.offset, self.what = offset, what


def read_caffemodel(path: str | os.PathLike, *, mmap: bool | None = None) -> list[WireLayer]:
    """A binary caffemodel (V2, V1 or V0) -> its layers, upgraded as Caffe does.

    The blobs' arrays are views of one writable buffer, so tensors made from them
    (torch.from_numpy) need no second copy: the file mapped copy-on-write (mmap=True;
    mmap=None is mapped.wanted's policy: files of 16 MiB or more, CAFFE_FX_MMAP) or
    read into memory (mmap=False).  A truncated or corrupt file raises WeightsError
    naming the file and the byte offset.
    """
    p = Path(path)
    buf = _load(p, mmap)
    reader = _Reader(buf, mapped.is_mapped(buf))
    try:
        skeleton, fragments = reader.walk()
    except _Corrupt as e:
        where = f" in layer '{reader.layer_name}'" if reader.layer_name else ""
        what = _looks_like(buf)
        raise WeightsError(
            f"{p}: not a valid caffemodel (truncated or corrupt) at byte offset "
            f"{e.offset}{where}: {e.what}; the file has {len(buf)} bytes"
            if not what else f"{p}: not a caffemodel: {what}") from None
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(skeleton)
    except _message.DecodeError as e:
        offset = _failing_fragment(fragments)
        raise WeightsError(
            f"{p}: not a valid caffemodel (corrupt): the net definition at byte offset "
            f"{offset} does not parse as a NetParameter ({e})") from e
    bad = _non_utf8(net, "")
    if bad is not None:
        raise WeightsError(
            f"{p}: {bad[0]} = {bad[1]!r} is not valid UTF-8 text; caffe_fx names layers and "
            "blobs by text (Python str), so rename it in Caffe (UTF-8) and save the model again")
    if not net.layer and not net.layers:
        what = _looks_like(buf)
        raise WeightsError(f"{p}: the file is empty; allowed: a caffemodel" if not len(buf)
                           else f"{p}: not a caffemodel: {what}" if what else
                           f"{p}: parses as a NetParameter but holds no layers "
                           f"({len(buf)} bytes); is it a caffemodel?")
    reader.align_views()
    net = upgrade_net(net, str(p))
    layers = []
    for layer in net.layer:
        blobs = tuple(reader.blobs[_placeholder_index(b, p, layer.name)] for b in layer.blobs)
        layers.append(WireLayer(layer.name, layer.type, blobs))
    return layers


_SNIFF_LIMIT = 256 << 20  # files parsed whole to say what they are (mean files, snapshots)
_CONVERT = (": caffe_fx reads weights from caffemodels (binary or HDF5): `caffe-fx convert "
            "FILE --prototxt NET` writes one from caffe_fx's other formats")


def _looks_like(buf: np.ndarray) -> str:
    """What a file that is not a caffemodel is instead, as 'it is ...' (or ''): the
    files Caffe users mix up with weights, told by their signatures or by parsing them as
    the messages Caffe writes.  Only on the error path."""
    head = bytes(buf[:16])
    if not head:
        return ""
    if head.startswith(b"\x93NUMPY"):
        return ("it is a NumPy .npy file; caffe_fx reads weights from caffemodels (binary "
                "or HDF5), and its own npy format is a folder of them, one per blob (`caffe-fx "
                "convert FOLDER --prototxt NET` writes a caffemodel from it)")
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive (an .npz, or torch.save's .pt)" + _CONVERT
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "it is a Python pickle (torch.save's legacy format)" + _CONVERT
    if len(head) >= 9 and head[8:9] == b"{" and \
            int.from_bytes(head[:8], "little") < len(buf):
        return "it is a .safetensors file" + _CONVERT
    if len(buf) > _SNIFF_LIMIT:
        return ""
    data = bytes(buf)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and "\0" not in text:
        return _text_kind(text)
    blob = caffe_pb2.BlobProto()
    state = caffe_pb2.SolverState()
    try:
        blob.ParseFromString(data)
        state.ParseFromString(data)
    except _message.DecodeError:
        return ""
    legacy = any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
    shape = [blob.num, blob.channels, blob.height, blob.width] if legacy \
        else list(blob.shape.dim)
    if shape and len(blob.data) == int(np.prod(shape)) > 0:
        return (f"it is a BlobProto of shape {shape} (a mean file, as compute_image_mean "
                "writes: transform_param's mean_file, or caffe.io.blobproto_to_array)")
    if state.learned_net.endswith((".caffemodel", ".h5")):
        return (f"it is a solver snapshot (.solverstate, of iteration {state.iter}): its "
                f"weights are in {state.learned_net!r}; a solver resumes from it "
                + spelled("(solver.restore)", "(--snapshot)"))
    return ""


def text_message(text: str) -> _message.Message | None:
    """`text` as the NetParameter or else the SolverParameter it is: the first of the two
    whose schema knows every field in it (protobuf's text parser, merging repeats as
    read.py's parser does), with at least one field set; None when neither."""
    from google.protobuf import text_format

    for message in (caffe_pb2.NetParameter(), caffe_pb2.SolverParameter()):
        try:
            text_format.Merge(text, message)
        except text_format.ParseError:
            continue
        if message.ListFields():
            return message
    return None


def _text_kind(text: str) -> str:
    if text.lstrip().startswith(("{", "[")):
        return "it is text (JSON?)" + _CONVERT
    message = text_message(text)
    if message is not None:
        kind = "a net" if isinstance(message, caffe_pb2.NetParameter) else "a solver"
        return (f"it is {kind} prototxt (text)" + spelled(
            ": the weights come second, compile(prototxt, weights) or "
            "caffe.Net(prototxt, weights, phase)",
            ", not weights: give it where the net is asked for (the first argument; "
            "caffe-fx convert's --prototxt) and a caffemodel here"))
    return "it is text, not a binary caffemodel"


def _load(p: Path, choice: bool | None) -> np.ndarray:
    """The file's bytes: a private map when mapped.wanted says so (and the file system
    maps), else read into memory."""
    try:
        with open(p, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            if mapped.wanted(size, choice):
                buf = mapped.map_fd(f.fileno(), size)
                if buf is not None:
                    return buf
            return _read_all(f, size)
    except OSError as e:
        raise WeightsError(f"{p}: cannot read the caffemodel: {e}") from e


def _read_all(f: IO[bytes], size: int) -> np.ndarray:
    buf = np.empty(size, dtype=np.uint8)
    view, done = buf.data, 0
    while done < size:
        n = f.readinto(view[done:])  # type: ignore[attr-defined]
        if not n:
            break
        done += n
    return buf[:done]


def _non_utf8(msg: _message.Message, path: str) -> tuple[str, bytes] | None:
    """The first string field (e.g. `layer[3].name`) whose bytes are not UTF-8: protobuf
    hands those over as bytes, which every name lookup downstream would trip over."""
    from google.protobuf.descriptor import FieldDescriptor as FD

    for fd, value in msg.ListFields():
        name = f"{path}.{fd.name}" if path else fd.name
        repeated = fd.is_repeated
        items = list(value) if repeated else [value]
        for k, item in enumerate(items):
            where = f"{name}[{k}]" if repeated else name
            if fd.type == FD.TYPE_STRING and isinstance(item, bytes):
                return where, item
            if fd.type == FD.TYPE_MESSAGE:
                found = _non_utf8(item, where)
                if found is not None:
                    return found
    return None


def _failing_fragment(fragments: list[tuple[int, bytes]]) -> int:
    for offset, fragment in fragments:
        try:
            caffe_pb2.NetParameter().ParseFromString(fragment)
        except _message.DecodeError:
            return offset
    return 0


def _placeholder_index(blob: caffe_pb2.BlobProto, p: Path, layer: str) -> int:
    # upgrade_net copies blobs as messages, so each carries our index through it.
    if len(blob.double_diff) != 1:
        raise WeightsError(f"{p}: layer '{layer}': a blob was not read from the file")
    return int(blob.double_diff[0])


def varint_bytes(value: int, extra: int = 0) -> bytes:
    """A non-negative int as a protobuf varint, `extra` bytes longer than needed (the
    same value: continuation bits over zero groups)."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    if extra:
        out[-1] |= 0x80
        out.extend(b"\x80" * (extra - 1) + b"\x00")
    return bytes(out)


def _placeholder(index: int) -> bytes:
    # A BlobProto holding only double_diff = [index]: nothing else in a caffemodel
    # reader looks at double_diff (Caffe ignores diffs when loading weights).
    body = np.array([index], dtype="<f8").tobytes()
    return _key(_BLOB_DOUBLE_DIFF) + varint_bytes(len(body)) + body


def _key(field: int, wire: int = _LEN) -> bytes:
    return varint_bytes(field << 3 | wire)


def _int32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


class _Reader:
    """One walk over the file: collects blobs and the net's bytes without their data."""

    def __init__(self, buf: np.ndarray, mapped: bool = False) -> None:
        self.buf, self.mv, self.mapped = buf, buf.data, mapped
        self.blobs: list[WireBlob] = []
        self.layer_name = ""
        self._unaligned: list[tuple[int, int, int]] = []  # (blob, offset, header size)

    # --- primitives -------------------------------------------------------------------

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        mv, result, shift, start = self.mv, 0, 0, pos
        while True:
            if pos >= end:
                raise _Corrupt(start, "a varint runs past the end of its message")
            b = mv[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result & 0xFFFFFFFFFFFFFFFF, pos
            shift += 7
            if shift >= 70:
                raise _Corrupt(start, "a varint is longer than 10 bytes")

    def tag(self, pos: int, end: int) -> tuple[int, int, int]:
        key, pos2 = self.varint(pos, end)
        field, wire = key >> 3, key & 7
        if field == 0 or field >= 1 << 29:
            raise _Corrupt(pos, f"field number {field} is not allowed")
        if wire in (6, 7):
            raise _Corrupt(pos, f"wire type {wire} does not exist")
        return field, wire, pos2

    def skip(self, field: int, wire: int, pos: int, end: int, depth: int = 0) -> int:
        """Past the value of one field whose tag ends at `pos`."""
        if wire == _VARINT:
            return self.varint(pos, end)[1]
        if wire == _FIXED64 or wire == _FIXED32:
            nxt = pos + (8 if wire == _FIXED64 else 4)
            if nxt > end:
                raise _Corrupt(pos, "a fixed-size value runs past the end of its message")
            return nxt
        if wire == _LEN:
            length, pos = self.varint(pos, end)
            if length > end - pos:
                raise _Corrupt(pos, f"a field of {length} bytes runs past the end of its "
                                    f"message ({end - pos} bytes left)")
            return pos + length
        if wire == _START_GROUP:
            if depth >= _MAX_DEPTH:
                raise _Corrupt(pos, "groups nested too deeply")
            while True:
                start = pos
                f, w, pos = self.tag(pos, end)
                if w == _END_GROUP:
                    if f != field:
                        raise _Corrupt(start, f"group {field} closed by end group {f}")
                    return pos
                pos = self.skip(f, w, pos, end, depth + 1)
        raise _Corrupt(pos, f"end group {field} without a start group")

    def fields(self, pos: int, end: int) -> Iterator[_Field]:
        """(field, wire, field start, value start, value end) over one message."""
        while pos < end:
            start = pos
            field, wire, pos = self.tag(pos, end)
            if wire == _END_GROUP:
                raise _Corrupt(start, f"end group {field} without a start group")
            if wire == _LEN:
                length, vstart = self.varint(pos, end)
                if length > end - vstart:
                    raise _Corrupt(start, f"field {field} of {length} bytes runs past the "
                                          f"end of its message ({end - vstart} bytes left)")
                pos = vstart + length
                yield field, wire, start, vstart, pos
            else:
                vstart = pos
                pos = self.skip(field, wire, pos, end)
                yield field, wire, start, vstart, pos

    # --- the net ----------------------------------------------------------------------

    def walk(self) -> tuple[bytes, list[tuple[int, bytes]]]:
        """The net's bytes with each blob replaced by a placeholder, and the same cut
        into top-level fields with their file offsets (to locate a parse failure)."""
        mv, out, fragments = self.mv, [], []
        for field, wire, start, vstart, vend in self._top_fields():
            if wire == _LEN and field in (_NET_LAYER, _NET_LAYERS):
                if field == _NET_LAYER:
                    body = self.layer(vstart, vend, _V2_NAME, _V2_BLOBS, nested=False)
                else:
                    body = self.layer(vstart, vend, _V1_NAME, _V1_BLOBS, nested=True)
                piece = _key(field) + varint_bytes(len(body)) + body
            else:
                piece = bytes(mv[start:vend])
            out.append(piece)
            fragments.append((start, piece))
            self.layer_name = ""  # errors in the next field's header are not this layer's
        return b"".join(out), fragments

    def _top_fields(self) -> Iterator[_Field]:
        """fields() over the file, naming the layer a truncation cuts into."""
        pos, end = 0, len(self.mv)
        while pos < end:
            start = pos
            field, wire, pos = self.tag(pos, end)
            if wire != _LEN or field not in (_NET_LAYER, _NET_LAYERS):
                pos = self.skip(field, wire, pos, end)
                yield field, wire, start, start, pos  # copied whole, value start unused
                continue
            length, vstart = self.varint(pos, end)
            if length > end - vstart:
                try:  # walk what is there, for the layer's name
                    self.layer(vstart, end, *((_V2_NAME, _V2_BLOBS, False)
                                              if field == _NET_LAYER
                                              else (_V1_NAME, _V1_BLOBS, True)))
                except _Corrupt:
                    pass
                raise _Corrupt(start, f"the layer is {length} bytes long but the file ends "
                                      f"{end - vstart} bytes into it (truncated)")
            pos = vstart + length
            yield field, wire, start, vstart, pos

    def layer(self, pos: int, end: int, name_field: int, blobs_field: int,
              nested: bool) -> bytes:
        mv, out = self.mv, []
        for field, wire, start, vstart, vend in self.fields(pos, end):
            if wire == _LEN and field == name_field:
                self.layer_name = bytes(mv[vstart:vend]).decode("utf-8", "replace")
            if wire == _LEN and field == blobs_field:
                index = len(self.blobs)
                self.blobs.append(self.blob(start, vstart, vend))
                body = _placeholder(index)
            elif wire == _LEN and nested and field == _V1_V0LAYER:
                body = self.layer(vstart, vend, _V0_NAME, _V0_BLOBS, nested=False)
            else:
                out.append(bytes(mv[start:vend]))
                continue
            out.append(_key(field) + varint_bytes(len(body)) + body)
        return b"".join(out)

    # --- one BlobProto ----------------------------------------------------------------

    def blob(self, offset: int, pos: int, end: int) -> WireBlob:
        dims: list[int] = []
        legacy: dict[int, int] = {}
        floats: list[np.ndarray] = []
        doubles: list[np.ndarray] = []
        packed_at: list[tuple[int, int]] = []  # (offset, header size) of packed floats
        buf = self.buf
        while pos < end:
            start = pos
            field, wire, pos = self.tag(pos, end)
            if field == _BLOB_DATA and wire == _LEN:
                length, vstart = self.varint(pos, end)
                pos = self._packed_end(start, vstart, length, end, 4)
                floats.append(np.frombuffer(buf, "<f4", length // 4, vstart))
                packed_at.append((vstart, vstart - start))
            elif field == _BLOB_DATA and wire == _FIXED32:
                arr, pos = self._unpacked(start, pos, end, 4, "<f4")
                floats.append(arr)
                packed_at.append((-1, 0))
            elif field == _BLOB_DOUBLE_DATA and wire == _LEN:
                length, vstart = self.varint(pos, end)
                pos = self._packed_end(start, vstart, length, end, 8)
                doubles.append(np.frombuffer(buf, "<f8", length // 8, vstart))
            elif field == _BLOB_DOUBLE_DATA and wire == _FIXED64:
                arr, pos = self._unpacked(start, pos, end, 8, "<f8")
                doubles.append(arr)
            elif field == _BLOB_SHAPE and wire == _LEN:
                length, vstart = self.varint(pos, end)
                pos = vstart + length
                if pos > end:
                    raise _Corrupt(start, f"blob shape of {length} bytes runs past the end "
                                          "of its blob")
                dims.extend(self.dims(vstart, pos))
            elif field in _BLOB_LEGACY and wire == _VARINT:
                value, pos = self.varint(pos, end)
                legacy[field] = _int32(value)
            else:  # diff, double_diff, unknown fields, known ones with another wire type
                pos = self.skip(field, wire, pos, end)

        if legacy:
            shape = tuple(legacy.get(f, 0) for f in _BLOB_LEGACY)
        else:
            shape = tuple(dims)
        if any(d < 0 for d in shape):
            raise _Corrupt(offset, f"blob shape {list(shape)} has a negative dimension")
        count = 1
        for d in shape:
            count *= d
        # Blob::FromProto: double_data wins when it holds any value.
        n_doubles = sum(a.size for a in doubles)
        parts = doubles if n_doubles else floats
        size = n_doubles if n_doubles else sum(a.size for a in floats)
        if size != count:
            raise _Corrupt(offset, f"blob {len(self.blobs)} of shape {list(shape)} holds "
                                   f"{size} values; expected {count}")
        if not n_doubles and len(floats) == 1 and packed_at[0][0] >= 0 and _LITTLE:
            data = floats[0]
            if packed_at[0][0] % 4:
                self._unaligned.append((len(self.blobs), *packed_at[0]))
        else:
            data = np.empty(size, dtype=np.float32)
            at = 0
            for a in parts:
                data[at:at + a.size] = a
                at += a.size
        return WireBlob(shape, bool(legacy), data, offset)

    def dims(self, pos: int, end: int) -> list[int]:
        out: list[int] = []
        for field, wire, start, vstart, vend in self.fields(pos, end):
            if field != _SHAPE_DIM:
                continue
            if wire == _VARINT:
                out.append(_int64(self.varint(vstart, vend)[0]))
            elif wire == _LEN:
                p = vstart
                while p < vend:
                    value, p = self.varint(p, vend)
                    out.append(_int64(value))
        return out

    def _packed_end(self, start: int, vstart: int, length: int, end: int,
                    item: int) -> int:
        if length > end - vstart:
            raise _Corrupt(start, f"packed data of {length} bytes runs past the end of its "
                                  f"blob ({end - vstart} bytes left)")
        if length % item:
            raise _Corrupt(start, f"packed data of {length} bytes is not a whole number of "
                                  f"{item}-byte values")
        return vstart + length

    def _unpacked(self, start: int, pos: int, end: int, item: int, dtype: str
                  ) -> tuple[np.ndarray, int]:
        """A run of unpacked repeated values (tag, value, tag, value...: legal protobuf
        that some writers emit), read as one strided view.  `pos` is past the tag."""
        if end - pos < item:
            raise _Corrupt(start, "a fixed-size value runs past the end of its blob")
        if pos - start != 1:  # a tag written in more bytes than needed: one value
            return np.frombuffer(self.buf, dtype, 1, pos), pos + item
        stride = 1 + item
        n_max = (end - start) // stride
        tags = self.buf[start:start + n_max * stride:stride]
        miss = np.flatnonzero(tags != self.buf[start])
        n = int(miss[0]) if miss.size else n_max
        arr = np.ndarray((n,), dtype=dtype, buffer=self.buf, offset=start + 1,
                         strides=(stride,))
        return arr, start + n * stride

    # --- after the walk ---------------------------------------------------------------

    def align_views(self) -> None:
        """Puts every view on a 4-byte boundary: torch kernels expect aligned floats.
        In a buffer read into memory each moves down over its own tag and length
        (memmove, no second copy); only a blob under 128 bytes (2-byte header) that is
        3 bytes off is copied instead.  In a map each is copied: moving it would copy
        every page it touches (copy-on-write) and then move the bytes again."""
        base = self.buf.ctypes.data
        for index, offset, header in self._unaligned:
            blob = self.blobs[index]
            shift = offset % 4
            if self.mapped:
                data = mapped.copy(self.buf, blob.data, offset)
            elif shift > header:
                data = blob.data.copy()
            else:
                ctypes.memmove(base + offset - shift, base + offset, blob.data.nbytes)
                data = np.frombuffer(self.buf, "<f4", blob.data.size, offset - shift)
            self.blobs[index] = WireBlob(blob.shape, blob.legacy, data, blob.offset)
        self._unaligned.clear()


# --------------------------------------------------------------------------- writing

class StoredArray(Protocol):
    """A blob to write: its float array, and whether Caffe stored it with the legacy
    num/channels/height/width fields (frontend/read.py's StoredBlob)."""

    @property
    def array(self) -> np.ndarray: ...

    @property
    def legacy(self) -> bool: ...


def _blob_head(blob: StoredArray) -> bytes:
    """Blob::ToProto without the data: `shape`, or the legacy num/channels/height/width
    when the blob was stored that way (so Blob::ShapeEquals still lets old InnerProduct
    weights (1, 1, N, K) fill a 2-D blob)."""
    proto = caffe_pb2.BlobProto()
    shape = blob.array.shape
    if blob.legacy and len(shape) == 4:
        proto.num, proto.channels, proto.height, proto.width = (int(d) for d in shape)
    else:
        proto.shape.dim.extend(int(d) for d in shape)
    return proto.SerializeToString()


def write_caffemodel(f: IO[bytes], header: caffe_pb2.NetParameter,
                     layers: Sequence[tuple[caffe_pb2.LayerParameter, Sequence[StoredArray]]],
                     advance: Callable[[int], None] = lambda n: None) -> None:
    """Streams a NetParameter: protobuf serialises everything but the blobs' float data,
    which goes to the file straight from the arrays (packed little-endian float32, as
    `repeated float data = 5 [packed = true]` is on the wire).  Fields may come in any
    order on the wire, so each layer's blobs follow its other fields.  `header` holds
    the net's fields but its layers; `advance(nbytes)` is called as blob data is written.

    Every blob's data starts on a 4-byte boundary of the file, so a reader that maps
    the file (mapped.py) shares all of it: the data field's tag is written as a varint
    up to 3 bytes longer than needed (a tag is the same however many bytes carry it,
    up to the 5 of a 32-bit varint that protobuf's parsers, Caffe's included, read;
    upb refuses a *length* of more than 5 bytes, which leaves big blobs no room)."""
    pos = _write(f, header.SerializeToString())
    layer_key, blobs_key = _key(_NET_LAYER), _key(_V2_BLOBS)
    for lp, blobs in layers:
        head = lp.SerializeToString()
        arrays = [np.ascontiguousarray(b.array, dtype="<f4") for b in blobs]
        heads = [_blob_head(b) for b in blobs]
        pads = _aligning_pads(pos + len(layer_key), head, heads, [a.nbytes for a in arrays])
        parts = []
        for bhead, arr, pad in zip(heads, arrays, pads):
            bhead += varint_bytes(_BLOB_DATA << 3 | _LEN, pad) + varint_bytes(arr.nbytes)
            parts.append((bhead, arr, len(bhead) + arr.nbytes))
        size = len(head) + sum(len(blobs_key) + len(varint_bytes(n)) + n for _, _, n in parts)
        pos += _write(f, layer_key + varint_bytes(size) + head)
        for bhead, arr, n in parts:
            pos += _write(f, blobs_key + varint_bytes(n) + bhead)
            f.write(arr.data)  # the raw float32 bytes, no copy
            pos += arr.nbytes
            advance(arr.nbytes)


def _write(f: IO[bytes], data: bytes) -> int:
    f.write(data)
    return len(data)


def _aligning_pads(start: int, head: bytes, heads: Sequence[bytes], sizes: Sequence[int]
                   ) -> list[int]:
    """Extra bytes (0-3) for each blob's data tag so that its data starts on a 4-byte
    boundary (`heads`: each blob's fields before that tag), for a layer whose length
    varint starts at file offset `start`.
    The lengths before a blob depend on the padding, so it is found by iteration; one
    that does not settle leaves data unaligned (readers copy those blobs)."""
    pads = [0] * len(sizes)
    for _ in range(8):
        lens = [len(h) + 1 + p + len(varint_bytes(n)) + n
                for h, n, p in zip(heads, sizes, pads)]
        at = start + len(varint_bytes(len(head) + sum(
            1 + len(varint_bytes(n)) + n for n in lens))) + len(head)
        new = []
        for h, n, p, total in zip(heads, sizes, pads, lens):
            data_at = at + 1 + len(varint_bytes(total)) + len(h) + 1 + p + len(varint_bytes(n))
            new.append((p - data_at) % 4)
            at += 1 + len(varint_bytes(total)) + total
        if new == pads:
            break
        pads = new
    return pads
