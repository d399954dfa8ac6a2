"""Tests for weights mapped from their files (caffe_fx/frontend/mapped.py and its users).

Expected values: today's loader (the file read into memory, mmap=False), itself checked
against protobuf's parse and Caffe's own Net on these goldens (test_wire.py,
test_read_weights.py); for files caffe_fx writes aligned, real Caffe's parameters after
loading them (small_params.npz, and the oracle test below).  Sharing is checked in
/proc/self/maps: a mapped parameter's address lies in the file's private mapping.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx import weights_io
from caffe_fx.errors import WeightsError
from caffe_fx.frontend import mapped
from caffe_fx.frontend.read import read_stored
from caffe_fx.frontend.wire import read_caffemodel, varint_bytes
from caffe_fx.proto import caffe_pb2

TESTS = Path(__file__).resolve().parents[1]
WIRE = TESTS / "golden" / "wire"
SMALL_NET, SMALL = WIRE / "small.prototxt", WIRE / "small.caffemodel"
CAFFEMODELS = sorted(p for p in (TESTS / "golden").rglob("*.caffemodel*")
                     if not p.name.endswith(".solverstate.h5"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _caffe_params() -> dict[str, np.ndarray]:
    with np.load(WIRE / "small_params.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.fixture
def aligned(tmp_path: Path) -> Path:
    """SMALL as caffe_fx writes it: every blob's data on a 4-byte boundary."""
    stored = read_stored(SMALL, mmap=False).layers
    path = tmp_path / "aligned.caffemodel"
    caffe_fx.save_caffemodel(path, {k: [b.array for b in v if b is not None]
                                    for k, v in stored.items()}, SMALL_NET)
    return path


@pytest.mark.parametrize("path", CAFFEMODELS, ids=lambda p: str(p.relative_to(TESTS)))
def test_mapped_equals_read_bit_for_bit(path: Path) -> None:
    read, mapped_ = read_stored(path, mmap=False), read_stored(path, mmap=True)
    assert list(read.layers) == list(mapped_.layers) and read.hdf5 == mapped_.hdf5
    for name, blobs in read.layers.items():
        assert len(blobs) == len(mapped_.layers[name])
        for a, b in zip(blobs, mapped_.layers[name]):
            if a is None:
                assert b is None
                continue
            assert b is not None and (a.legacy, a.array.shape) == (b.legacy, b.array.shape)
            assert b.array.dtype == np.float32 and b.array.flags.c_contiguous
            assert b.array.flags.aligned and b.array.flags.writeable
            assert a.array.tobytes() == b.array.tobytes()
            # a view of the map, or (values off a 4-byte boundary) a copy in the heap
            assert mapped.backing_file(b.array) in (str(path), None)


def test_caffes_unaligned_blobs_are_copied_the_aligned_shared() -> None:
    blobs = [b for lay in read_caffemodel(SMALL, mmap=True) for b in lay.blobs]
    shared = [b for b in blobs if mapped.backing_file(b.data) == str(SMALL)]
    # Caffe's writer leaves data wherever the headers end: here 1 blob of 9 is aligned.
    assert len(shared) == 1 and all(b.data.ctypes.data % 4 == 0 for b in blobs)
    offsets = {b.offset for b in shared}
    assert all(mapped.is_mapped(b.data) for b in shared) and len(offsets) == 1


def test_caffe_fx_writes_every_blob_aligned(aligned: Path) -> None:
    layers = read_caffemodel(aligned, mmap=True)
    blobs = [b for lay in layers for b in lay.blobs]
    assert len(blobs) == 9
    assert all(mapped.backing_file(b.data) == str(aligned) for b in blobs)
    # the padded length varints read back as the same values through protobuf too
    net = caffe_pb2.NetParameter.FromString(aligned.read_bytes())
    caffe = _caffe_params()
    for layer in net.layer:
        for i, blob in enumerate(layer.blobs):
            np.testing.assert_array_equal(np.array(blob.data, np.float32),
                                          caffe[f"{layer.name}/{i}"].ravel())


def test_big_blobs_aligned_and_read_by_protobuf(tmp_path: Path) -> None:
    """Blobs of 4-byte and 5-byte length varints: the padding goes in the tag, since
    protobuf's upb refuses a length varint longer than 5 bytes."""
    path = tmp_path / "big.caffemodel"
    arrays = {"a": [np.ones(7, np.float32)], "b": [np.arange(1 << 20, dtype=np.float32)],
              "c": [np.full((3, 5), 2.0, np.float32)]}
    caffe_fx.save_caffemodel(path, arrays)
    net = caffe_pb2.NetParameter.FromString(path.read_bytes())
    mapped_ = read_stored(path, mmap=True).layers
    for layer in net.layer:
        for i, blob in enumerate(layer.blobs):
            want = arrays[layer.name][i]
            np.testing.assert_array_equal(np.array(blob.data, np.float32), want.ravel())
            got = mapped_[layer.name][i]
            assert got is not None and mapped.backing_file(got.array) == str(path)
            np.testing.assert_array_equal(got.array, want)


def test_varint_with_extra_bytes_is_the_same_value() -> None:
    for value in (0, 1, 127, 128, 300, 2**31 - 1, 2**34 + 5):
        for extra in range(4):
            raw = varint_bytes(value, extra)
            assert len(raw) == len(varint_bytes(value)) + extra
            blob = caffe_pb2.BlobProto.FromString(b"\x08" + raw)  # num = value (int32)
            assert blob.num == np.int64(value).astype(np.int32)


@pytest.mark.oracle
def test_caffe_loads_the_aligned_file(aligned: Path, oracle) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    record, _ = oracle(SMALL_NET, {"data": x}, weights=aligned, backward=True,
                       topdiffs={"ip1": np.ones((2, 5), np.float32)})
    for key, value in _caffe_params().items():
        np.testing.assert_array_equal(record[f"param/{key}"], value)


@pytest.mark.parametrize("fmt", ["binary", "hdf5"])
def test_compiled_parameters_share_the_file_and_never_write_it(
        fmt: str, aligned: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net, path = SMALL_NET, aligned
    if fmt == "hdf5":
        path = aligned.with_suffix(".caffemodel.h5")
        caffe_fx.save_caffemodel(path, caffe_fx.compile(SMALL_NET, SMALL), format="hdf5")
    before = _digest(path)
    monkeypatch.setenv(mapped.ENV, "0")
    reference = caffe_fx.compile(net, path)
    monkeypatch.setenv(mapped.ENV, "1")
    gm = caffe_fx.compile(net, path)
    params = dict(gm.named_parameters())
    assert params and all(mapped.backing_file(p.detach().numpy()) == str(path)
                          for p in params.values())
    buffers = dict(gm.named_buffers())  # BatchNorm's running sums
    assert all(mapped.backing_file(b.numpy()) == str(path) for b in buffers.values())
    inputs = {"data": torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))}
    # The same weights bit for bit; the outputs within an ulp, as kernels pick their
    # vector paths by the weights' address modulo 64 (a map's differs from a heap's)
    for n, t in [*params.items(), *buffers.items()]:
        assert torch.equal(t, reference.get_parameter(n) if n in params else
                           reference.get_buffer(n))
    for name, out in reference(**inputs).items():
        torch.testing.assert_close(gm(**inputs)[name], out, rtol=0,
                                   atol=1e-6 * float(out.abs().max()))
    # a training step updates in place: the touched pages become the process's own
    gm.train()
    opt = torch.optim.SGD(gm.parameters(), lr=0.1, momentum=0.9)
    loss = sum(t.float().sum() for t in gm(**inputs).values())
    loss.backward()
    opt.step()
    changed = [n for n, p in params.items()
               if not torch.equal(p.detach(), reference.get_parameter(n).detach())]
    assert changed == list(params)
    with torch.no_grad():
        gm.bn1.mean.mul_(2.0)  # a buffer written in place (running sums)
    assert _digest(path) == before
    again = caffe_fx.compile(net, path)
    for n, p in again.named_parameters():
        assert torch.equal(p, reference.get_parameter(n))


def test_policy_maps_large_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mapped.ENV, raising=False)
    assert not mapped.wanted(mapped.MIN_BYTES - 1) and mapped.wanted(mapped.MIN_BYTES)
    assert not mapped.wanted(0, True) and mapped.wanted(5, True)
    assert not mapped.wanted(mapped.MIN_BYTES, False)
    blobs = [b for lay in read_caffemodel(SMALL) for b in lay.blobs]
    assert not any(mapped.is_mapped(b.data) for b in blobs)  # small: read
    monkeypatch.setenv(mapped.ENV, "0")
    assert not mapped.wanted(1 << 40)
    monkeypatch.setenv(mapped.ENV, "1")
    assert mapped.wanted(1)
    monkeypatch.setenv(mapped.ENV, "yes")
    with pytest.raises(WeightsError, match=r"CAFFE_FX_MMAP='yes'; allowed: 0, 1, auto"):
        caffe_fx.compile(SMALL_NET, SMALL)


def test_a_file_replaced_after_compile_leaves_the_weights(
        aligned: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """caffe_fx's writers replace a file by rename: the map keeps the old inode."""
    monkeypatch.setenv(mapped.ENV, "1")
    gm = caffe_fx.compile(SMALL_NET, aligned)
    caffe = _caffe_params()
    caffe_fx.save_caffemodel(aligned, {"ip1": [np.zeros((5, 64)), np.zeros(5)]}, force=True)
    np.testing.assert_array_equal(gm.ip1.weight.detach().numpy(), caffe["ip1/0"])


@pytest.mark.parametrize("fmt, name", [("npy", "blobs/"), ("npz", "w.npz"), ("pt", "w.pt"),
                                       ("safetensors", "w.safetensors")])
def test_dump_formats_mapped_equal_read(fmt: str, name: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("safetensors") if fmt == "safetensors" else None
    stored = read_stored(SMALL, mmap=False).layers
    arrays = {f"{k}.{i}": b.array for k, v in stored.items() for i, b in enumerate(v)
              if b is not None}
    path = tmp_path / name
    weights_io.write_flat(path, arrays, fmt)
    monkeypatch.setenv(mapped.ENV, "0")
    read = weights_io.read_flat(path, fmt)
    monkeypatch.setenv(mapped.ENV, "1")
    got = weights_io.read_flat(path, fmt)
    assert list(got) == list(read) and set(got) == set(arrays)
    shared = 0
    for key, arr in got.items():
        assert arr.dtype == read[key].dtype and arr.tobytes() == read[key].tobytes()
        backing = mapped.backing_file(np.asarray(arr))
        shared += backing is not None
        if fmt != "npz":  # .npz members sit wherever the zip headers end
            assert backing is not None and backing.startswith(str(path))
    assert shared
    before = {p: _digest(p) for p in ([path] if path.is_file() else path.glob("*.npy"))}
    for arr in got.values():
        np.asarray(arr)[...] = 0  # copy-on-write: the file keeps its bytes
    assert {p: _digest(p) for p in before} == before


def test_facade_copy_from_a_map(aligned: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from caffe_fx import pycaffe

    monkeypatch.setenv(mapped.ENV, "1")
    net = pycaffe.Net(str(SMALL_NET), pycaffe.TEST)
    net.copy_from(str(aligned))
    caffe = _caffe_params()
    np.testing.assert_array_equal(net.params["ip1"][0].data, caffe["ip1/0"])
    assert mapped.backing_file(net.params["ip1"][0].data) is None  # Caffe's CopyFrom copies


def test_unaligned_blob_copied_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A blob off the boundary is copied chunk by chunk, the map's pages dropped as it
    goes (MADV_DONTNEED), and reads the same values."""
    monkeypatch.setattr(mapped, "_CHUNK", 4096)
    values = np.random.default_rng(1).standard_normal(50_000).astype(np.float32)
    shape = caffe_pb2.BlobProto()
    shape.shape.dim.append(values.size)
    # the wire by hand (no Python float per value): layer { name: "ip1" blobs { ... } }
    blob = shape.SerializeToString() + b"\x2a" + varint_bytes(values.nbytes)
    layer = b"\x0a\x03ip1" + b"\x3a" + varint_bytes(len(blob) + values.nbytes) + blob
    data = b"\xa2\x06" + varint_bytes(len(layer) + values.nbytes) + layer + values.tobytes()
    path = tmp_path / "unaligned.caffemodel"
    path.write_bytes(data)
    assert data.index(values.tobytes()) % 4  # off the boundary
    (got,) = read_caffemodel(path, mmap=True)[0].blobs
    assert mapped.backing_file(got.data) is None and got.data.ctypes.data % 4 == 0
    np.testing.assert_array_equal(got.data, values)
