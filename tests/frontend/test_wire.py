"""Tests for caffe_fx/frontend/wire.py: the caffemodel wire-format reader.

Every expectation comes from protobuf's own parser (caffe_pb2 + upgrade_net, then
np.array(blob.data)) on caffemodels real Caffe saved (tests/golden/wire/, made by
tools/make_wire_goldens.py; the V1 CIFAR-10 model in ../shared/models), or from Caffe's
Net itself (small_params.npz).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from caffe_fx.errors import WeightsError
from caffe_fx.frontend.upgrade import upgrade_net
from caffe_fx.frontend.wire import read_caffemodel
from caffe_fx.proto import caffe_pb2
from tests.nets.oracle import MODELS

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "wire"
SMALL = GOLDEN / "small.caffemodel"
V1_CIFAR = (MODELS / "ikkiChung+Prediction-Example-With-Caffe" / "examples" / "cifar10"
            / "cifar10_quick_iter_5000.caffemodel")


def _protobuf_layers(data: bytes) -> list[tuple[str, str, list[tuple[tuple, bool, np.ndarray]]]]:
    """What protobuf's parser makes of the file: Blob::FromProto's shape and values."""
    net = upgrade_net(caffe_pb2.NetParameter.FromString(data))
    out = []
    for layer in net.layer:
        blobs = []
        for b in layer.blobs:
            legacy = any(b.HasField(f) for f in ("num", "channels", "height", "width"))
            shape = (b.num, b.channels, b.height, b.width) if legacy else tuple(b.shape.dim)
            values = b.double_data if len(b.double_data) else b.data
            blobs.append((shape, legacy, np.array(values, dtype=np.float32)))
        out.append((layer.name, layer.type, blobs))
    return out


def _assert_same(path: Path, data: bytes) -> None:
    ours = read_caffemodel(path)
    theirs = _protobuf_layers(data)
    assert [(lay.name, lay.type) for lay in ours] == [(n, t) for n, t, _ in theirs]
    for layer, (_, _, blobs) in zip(ours, theirs):
        assert len(layer.blobs) == len(blobs)
        for blob, (shape, legacy, values) in zip(layer.blobs, blobs):
            assert blob.shape == shape and blob.legacy == legacy
            assert blob.data.dtype == np.float32 and blob.data.flags.c_contiguous
            assert blob.data.flags.aligned and blob.data.flags.writeable
            np.testing.assert_array_equal(blob.data, values)


def _write(tmp_path: Path, data: bytes, name: str = "w.caffemodel") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_caffe_saved_model_matches_protobuf_and_caffe() -> None:
    data = SMALL.read_bytes()
    _assert_same(SMALL, data)
    caffe = np.load(GOLDEN / "small_params.npz")
    ours = {lay.name: lay.blobs for lay in read_caffemodel(SMALL)}
    assert sorted(caffe.files) == sorted(f"{n}/{i}" for n, bs in ours.items()
                                         for i in range(len(bs)))
    for key in caffe.files:
        name, i = key.split("/")
        blob = ours[name][int(i)]
        np.testing.assert_array_equal(blob.data.reshape(blob.shape), caffe[key])
    assert [b.shape for b in ours["bn1"]] == [(4,), (4,), (1,)]
    assert [b.shape for b in ours["conv1"]] == [(4, 3, 3, 3), (4,)]


def test_packed_floats_are_views_of_one_buffer() -> None:
    """Only a blob under 128 bytes that sits 3 bytes off a 4-byte boundary is copied
    (bn1's scale factor and scale1's bias here); the others share the file's buffer."""
    blobs = [b for lay in read_caffemodel(SMALL) for b in lay.blobs]
    views = [b for b in blobs if not b.data.flags.owndata]
    assert len(views) == len(blobs) - 2
    assert all(b.data.nbytes < 128 for b in blobs if b.data.flags.owndata)
    buffers = {id(_buffer(b.data)) for b in views}
    assert len(buffers) == 1
    assert _buffer(views[0].data).nbytes == SMALL.stat().st_size


def _buffer(a: np.ndarray) -> object:
    while isinstance(a, np.ndarray) and a.base is not None:
        a = a.base
    return a.obj if isinstance(a, memoryview) else a


@pytest.mark.skipif(not V1_CIFAR.exists(), reason=f"needs {V1_CIFAR}")
def test_v1_binary_with_legacy_shapes() -> None:
    _assert_same(V1_CIFAR, V1_CIFAR.read_bytes())
    ip1 = {lay.name: lay for lay in read_caffemodel(V1_CIFAR)}["ip1"]
    assert [(b.shape, b.legacy) for b in ip1.blobs] == [((1, 1, 64, 1024), True),
                                                         ((1, 1, 1, 64), True)]


V0_DATA = ", ".join(str(0.5 * i) for i in range(54))
V0_DOUBLES = ", ".join(f"{i}.1" for i in range(36))
V0_NET = f"""name: "v0" input: "data" input_dim: 1 input_dim: 3 input_dim: 5 input_dim: 5
layers {{ layer {{ name: "conv1" type: "conv" num_output: 2 kernelsize: 3
                   blobs {{ num: 2 channels: 3 height: 3 width: 3 data: [{V0_DATA}] }}
                   blobs {{ num: 1 channels: 1 height: 1 width: 2 data: [5, 6] }} }}
         bottom: "data" top: "conv1" }}
layers {{ layer {{ name: "ip" type: "innerproduct" num_output: 2
                   blobs {{ num: 1 channels: 1 height: 2 width: 18 double_data: [{V0_DOUBLES}] }} }}
         bottom: "conv1" top: "ip" }}
"""


def test_v0_layers_keep_their_blobs_in_order(tmp_path: Path) -> None:
    data = text_format.Parse(V0_NET, caffe_pb2.NetParameter()).SerializeToString()
    path = _write(tmp_path, data)
    _assert_same(path, data)
    layers = {lay.name: lay for lay in read_caffemodel(path)}
    assert layers["conv1"].type == "Convolution" and layers["ip"].type == "InnerProduct"
    np.testing.assert_array_equal(layers["conv1"].blobs[1].data, [5, 6])


def _blob_bytes(fields: list[bytes]) -> bytes:
    return b"".join(fields)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _len_field(field: int, body: bytes) -> bytes:
    return _key(field, 2) + _varint(len(body)) + body


def _net_with_blobs(blobs: list[bytes], name: str = "ip") -> bytes:
    layer = _len_field(1, name.encode()) + _len_field(2, b"InnerProduct")
    layer += b"".join(_len_field(7, b) for b in blobs)
    return _len_field(100, layer)


def _shape(*dims: int) -> bytes:
    return _len_field(7, _len_field(1, b"".join(_varint(d) for d in dims)))


def test_double_data_is_converted_and_wins_over_data(tmp_path: Path) -> None:
    values = np.array([0.1, -2.5, 1e-40, 3.0e38, 7.0, 1 / 3], dtype=np.float64)
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2, 3])
    blob.double_data.extend(values.tolist())
    both = caffe_pb2.BlobProto()
    both.CopyFrom(blob)
    both.data.extend([9.0] * 6)
    data = _net_with_blobs([blob.SerializeToString(), both.SerializeToString()])
    path = _write(tmp_path, data)
    _assert_same(path, data)
    for b in read_caffemodel(path)[0].blobs:
        np.testing.assert_array_equal(b.data, values.astype(np.float32))


def test_unpacked_and_split_repeated_floats(tmp_path: Path) -> None:
    """Repeated floats written one tag per value (legal protobuf), split over several
    fields, mixed packed and unpacked, one with a tag in more bytes than needed."""
    values = np.arange(12, dtype=np.float32) * 0.25 - 1
    unpacked = b"".join(_key(5, 5) + struct.pack("<f", v) for v in values[:7])
    packed = _len_field(5, values[7:11].tobytes())
    long_tag = b"\xad\x00" + struct.pack("<f", values[11])  # field 5, wire 5, 2 bytes
    doubles = b"".join(_key(8, 1) + struct.pack("<d", v) for v in values[:3])
    blobs = [_shape(3, 4) + unpacked + packed + long_tag,
             _shape(7) + unpacked,
             unpacked[:5] + _shape(1),
             _shape(3) + doubles + _len_field(5, values[:3].tobytes())]
    data = _net_with_blobs(blobs)
    path = _write(tmp_path, data)
    _assert_same(path, data)
    got = [b.data for b in read_caffemodel(path)[0].blobs]
    np.testing.assert_array_equal(got[0], values)
    np.testing.assert_array_equal(got[3], values[:3])


@pytest.mark.parametrize("count", [5, 40000], ids=["copied", "moved"])
def test_unaligned_data_becomes_aligned(tmp_path: Path, count: int) -> None:
    """Packed data at an odd offset: small blobs are copied, large ones moved down over
    their own header; the neighbouring blobs keep their values."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (count, 3, count)]
    for pad in range(4):
        blobs = [_shape(a.size) + _len_field(5, a.tobytes()) for a in arrays]
        data = _net_with_blobs(blobs, name="x" * (1 + pad))
        path = _write(tmp_path, data, f"pad{pad}.caffemodel")
        _assert_same(path, data)
        got = read_caffemodel(path)[0].blobs
        for b, a in zip(got, arrays):
            np.testing.assert_array_equal(b.data, a)


def test_unknown_fields_and_groups_are_skipped(tmp_path: Path) -> None:
    blob = _shape(2) + _len_field(5, np.float32([1, 2]).tobytes())
    extra = _key(999, 0) + _varint(5) + _key(998, 3) + _key(1, 5) + b"abcd" + _key(998, 4)
    layer = _len_field(1, b"ip") + extra + _len_field(7, blob + extra) + extra
    data = _len_field(100, layer) + extra
    path = _write(tmp_path, data)
    _assert_same(path, data)


def test_error_names_file_offset_and_layer(tmp_path: Path) -> None:
    blob = _shape(2) + _key(5, 2) + _varint(100) + b"\0" * 8
    data = _net_with_blobs([blob], name="fc7")
    path = _write(tmp_path, data, "bad.caffemodel")
    offset = data.index(_key(5, 2) + _varint(100))
    with pytest.raises(WeightsError, match=rf"bad\.caffemodel: not a valid caffemodel "
                                           rf"\(truncated or corrupt\) at byte offset {offset} "
                                           r"in layer 'fc7': packed data of 100 bytes"):
        read_caffemodel(path)


@pytest.mark.parametrize("blob, match", [
    (_shape(2, 3) + _len_field(5, b"\0" * 20),
     r"blob 0 of shape \[2, 3\] holds 5 values; expected 6"),
    (_shape(2) + _len_field(5, b"\0" * 6), r"not a whole number of 4-byte values"),
    (_shape(2**64 - 2) + _len_field(5, b""), r"negative dimension"),
    (_shape(2) + _key(0, 0), r"field number 0 is not allowed"),
    (_shape(2) + _key(3, 6), r"wire type 6 does not exist"),
    (_shape(2) + b"\xff" * 11, r"longer than 10 bytes"),
    (_shape(2) + _key(9, 4), r"end group 9 without a start group"),
], ids=["count", "ragged", "negative", "field0", "wire6", "varint", "endgroup"])
def test_corrupt_blobs(tmp_path: Path, blob: bytes, match: str) -> None:
    path = _write(tmp_path, _net_with_blobs([blob]))
    with pytest.raises(WeightsError, match=match):
        read_caffemodel(path)


def test_every_truncation_is_an_error_or_a_valid_prefix(tmp_path: Path) -> None:
    """Cut at every byte: where protobuf rejects the file we raise WeightsError; a cut
    between two layers is a valid (shorter) NetParameter to protobuf and to us."""
    data = SMALL.read_bytes()
    path = tmp_path / "cut.caffemodel"
    valid = 0
    for n in range(len(data)):
        path.write_bytes(data[:n])
        try:
            theirs = _protobuf_layers(data[:n])
        except Exception:  # noqa: BLE001  (protobuf's DecodeError; anything else too)
            theirs = None
        try:
            ours = read_caffemodel(path)
        except WeightsError as e:
            assert "cut.caffemodel" in str(e)
            continue
        assert theirs is not None, f"cut at {n} accepted but protobuf rejects it"
        valid += 1
        assert [lay.name for lay in ours] == [name for name, _, _ in theirs]
    assert 0 < valid < 10  # only the cuts between the few top-level fields


def test_every_corrupted_byte_is_an_error_or_parses(tmp_path: Path) -> None:
    """Each byte of a real caffemodel overwritten with 0xff (a varint that never ends,
    field numbers and lengths out of range): WeightsError or a result equal to
    protobuf's parse of the same bytes, never another exception."""
    data = SMALL.read_bytes()
    path = tmp_path / "bad.caffemodel"
    for n in range(len(data)):
        bad = data[:n] + b"\xff" + data[n + 1:]
        path.write_bytes(bad)
        try:
            ours = read_caffemodel(path)
        except WeightsError:
            continue
        theirs = _protobuf_layers(bad)
        assert [lay.name for lay in ours] == [name for name, _, _ in theirs]
