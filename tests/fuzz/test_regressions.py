"""One regression test per class of malformed input issue #12 (and the fuzzer) found.

Each must raise a caffe_fx.errors subclass naming the layer/file, the field and the value
before anything large is allocated; the committed inputs under regressions/ replay the
fuzzer's finds.  These run in-process and fast: every case is refused from its shapes or
its file's metadata, so no case here allocates what it declares.
"""
from __future__ import annotations

import os
import re
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx import errors
from caffe_fx.frontend.read import read_stored
from caffe_fx.proto import caffe_pb2
from caffe_fx.weights_io import read_flat

HERE = Path(__file__).parent
INPUT = ('layer {{ name: "data" type: "Input" top: "data" '
         'input_param {{ shape {{ {dims} }} }} }}\n')


def net(body: str, dims: str = "dim: 1 dim: 3 dim: 8 dim: 8") -> str:
    return INPUT.format(dims=dims) + body


def layer(name: str, kind: str, params: str = "", bottom: str = "data") -> str:
    return (f'layer {{ name: "{name}" type: "{kind}" bottom: "{bottom}" top: "{name}" '
            f'{params} }}\n')


def strict_raises(cls, match: str):
    """pytest.raises for a caffe_fx class that is never the bare base class."""
    assert cls is not errors.CaffeFxError
    return pytest.raises(cls, match=match)


# ------------------------------------------------------------------ dims and shapes

@pytest.mark.parametrize("dims, match", [
    ("dim: -1 dim: 3", r"input_param.shape\[0\]: shape \[-1, 3\] has dim -1; allowed: dims >= 0"),
    ("dim: 100000 dim: 100000 dim: 100000", r"holds 1000000000000000 elements, more than "
                                            r"the 2147483647 allowed per blob"),
    ("dim: 1 dim: 1000000000000", r"\[1, 1000000000000\] holds"),  # BatchNorm over 10^12
], ids=["negative", "overflow", "batchnorm_1e12_channels"])
def test_input_dims(dims, match):
    with strict_raises(errors.ShapeError, r"layer 'data' \(Input\).*" + match):
        caffe_fx.compile(net(layer("bn", "BatchNorm"), dims))


def test_zero_dims_compile():
    # Blob::Reshape allows 0 (CHECK_GE(shape[i], 0)), so Caffe sets such a net up (its
    # forward then aborts on the empty blob, "Check failed: data_"); ours compiles and runs.
    gm = caffe_fx.compile(net(layer("r", "ReLU"), "dim: 0 dim: 3"))
    assert gm(data=torch.zeros(0, 3))["r"].shape == (0, 3)


@pytest.mark.parametrize("shape, match", [
    ((-1, 3), r"input_shapes\['data'\]: shape \[-1, 3\] has dim -1"),
    ((10**10, 10**10), r"input_shapes\['data'\]: shape \[10000000000, 10000000000\] holds"),
    ((2.5, 3), r"dim 2.5 of shape \[2.5, 3\] is not an integer"),
], ids=["negative", "overflow", "float"])
def test_input_shapes_argument(shape, match):
    with strict_raises(errors.ShapeError, match):
        caffe_fx.compile(net(layer("r", "ReLU")), input_shapes={"data": shape})


@pytest.mark.parametrize("body, match", [
    ('layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 100000 '
     'dim: 100000 dim: 100000 } } }', r"layer 'p' \(Parameter\): parameter_param.shape"),
    ('layer { name: "p" type: "DummyData" top: "p" dummy_data_param { shape { dim: 100000 '
     'dim: 100000 dim: 1000 } } }', r"layer 'p' \(DummyData\): dummy_data_param shape of top"),
    (layer("c", "Convolution", "convolution_param { num_output: 4 kernel_size: 2147483647 }"),
     r"layer 'c' \(Convolution\): the weight blob: shape \[4, 3, 2147483647, 2147483647\]"),
    (layer("c", "InnerProduct", "inner_product_param { num_output: 2147483647 }"),
     r"layer 'c' \(InnerProduct\): the weight blob: shape \[192, 2147483647\]"),
    (layer("c", "LRN", "lrn_param { local_size: 2000000001 }"),
     r"layer 'c' \(LRN\): lrn_param.local_size = 2000000001 needs a zero-padded window"),
], ids=["parameter", "dummy_data", "conv_kernel_2e31", "inner_product_2e31", "lrn_size"])
def test_blob_limit(body, match):
    with strict_raises(errors.ShapeError, match + r".*allowed per blob"):
        caffe_fx.compile(net(body))


def test_limits_follow_the_environment(monkeypatch):
    body = layer("c", "InnerProduct", "inner_product_param { num_output: 1000 }")
    caffe_fx.compile(net(body))  # 192000 weights: fine by default
    monkeypatch.setenv("CAFFE_FX_MAX_BLOB_ELEMENTS", "100000")
    with strict_raises(errors.ShapeError, r"holds 192000 elements, more than the 100000"):
        caffe_fx.compile(net(body))
    monkeypatch.delenv("CAFFE_FX_MAX_BLOB_ELEMENTS")
    monkeypatch.setenv("CAFFE_FX_MAX_NET_ELEMENTS", "150000")
    with strict_raises(errors.ShapeError, r"the net's blobs and parameters hold \d+ elements"):
        caffe_fx.compile(net(body))


def test_dummy_data_is_not_allocated_at_compile(monkeypatch):
    # 2^30 floats (4 GiB) would be allocated by shape inference on the CPU; on meta, none.
    body = ('layer { name: "d" type: "DummyData" top: "d" dummy_data_param { shape { '
            'dim: 1024 dim: 1024 dim: 1024 } } }')
    import resource
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gm = caffe_fx.compile(body)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 512 * 1024  # KiB
    assert gm.meta["caffe"].blob_shapes["d"] == (1024, 1024, 1024)


# ------------------------------------------------------------------ geometry

@pytest.mark.parametrize("kind, params, match", [
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 group: 0 }",
     r"convolution_param.group = 0 is not supported; supported: a positive count"),
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 stride: 0 }",
     r"convolution_param stride = 0 is not allowed; allowed: stride >= 1"),
    ("Convolution", "convolution_param { num_output: 4 kernel_size: 3 dilation: 0 }",
     r"convolution_param dilation = 0 is not allowed; allowed: dilation >= 1"),
    ("Deconvolution", "convolution_param { num_output: 4 kernel_size: 0 }",
     r"convolution_param kernel = 0 is not allowed"),
    ("Pooling", "pooling_param { kernel_size: 3 stride: 0 }",
     r"pooling_param stride = 0 is not allowed"),
], ids=["group0", "stride0", "dilation0", "deconv_kernel0", "pool_stride0"])
def test_zero_geometry(kind, params, match):
    with strict_raises(errors.UnsupportedFieldError, rf"layer 'c' \({kind}\): " + match):
        caffe_fx.compile(net(layer("c", kind, params)))


@pytest.mark.parametrize("params, match", [
    ("pooling_param { kernel_size: 2000000000 }",
     r"kernel h = 2000000000 is larger than the padded bottom \(8 \+ 2 \* 0\)"),
    ("pooling_param { kernel_size: 2 stride: 2000000000 }",
     r"stride h = 2000000000 puts the last window past the bottom \(8 \+ pad 0\).*"
     r"allowed: stride < 8"),
], ids=["kernel", "stride"])
def test_pooling_far_beyond_the_input(params, match):
    with strict_raises(errors.ShapeError, r"layer 'c' \(Pooling\): pooling_param " + match):
        caffe_fx.compile(net(layer("c", "Pooling", params)))


def test_reduction_mean_over_an_empty_axis_is_refused():
    body = layer("c", "Reduction", "reduction_param { operation: MEAN axis: 1 }")
    with strict_raises(errors.ShapeError, r"layer 'c' \(Reduction\): operation MEAN over "
                                          r"axes \[1\] of a bottom of shape \[2, 0\]"):
        caffe_fx.compile(net(body, "dim: 2 dim: 0"))
    # Real Caffe aborts on this net (caffe-oracle forward: "Check failed: data_").


def test_filter_with_a_0d_selector():
    body = ('layer { name: "s" type: "Input" top: "s" input_param { shape { } } }\n'
            'layer { name: "c" type: "Filter" bottom: "data" bottom: "s" top: "c" }')
    with strict_raises(errors.ShapeError, r"layer 'c' \(Filter\): the selector .* 0-axis"):
        caffe_fx.compile(net(body))


def test_layer_errors_are_never_the_bare_base_class():
    body = ('layer { name: "d" type: "DummyData" top: "d" dummy_data_param { '
            'shape { dim: 2 } num: 2 } }')
    with strict_raises(errors.NetDefinitionError, r"layer 'd' \(DummyData\): dummy_data_param "
                                                  r"gives both shape and num"):
        caffe_fx.compile(body)


# ------------------------------------------------------------------ names

@pytest.mark.parametrize("name", ["_caffe_modules", "_code", "_graph", "recompile",
                                  "_lineno_map", "training", "__init__",
                                  "__jit_ignored_attributes__"])
def test_layer_named_like_an_internal_attribute_works(name):
    body = layer(name, "Convolution", "convolution_param { num_output: 2 kernel_size: 3 }")
    gm = caffe_fx.compile(net(body))
    module = gm.meta["caffe"].modules[name]
    assert module != name or name == "_caffe_modules"
    out = gm(data=torch.ones(1, 3, 8, 8))[name]
    assert out.shape == (1, 2, 6, 6)
    assert torch.equal(torch.jit.script(gm)(data=torch.ones(1, 3, 8, 8))[name], out)
    assert gm.get_submodule(module).weight.shape == (2, 3, 3, 3)


# ------------------------------------------------------------------ paths

def test_paths(tmp_path):
    with strict_raises(errors.ProtoParseError, r"an empty path .* prototxt"):
        caffe_fx.compile("")
    with strict_raises(errors.ProtoParseError, rf"{tmp_path}: is a folder; a prototxt"):
        caffe_fx.compile(str(tmp_path))
    with strict_raises(errors.ProtoParseError, r"/dev/zero: is a character device"):
        caffe_fx.compile("/dev/zero")
    fifo = tmp_path / "net.prototxt"
    os.mkfifo(fifo)
    with strict_raises(errors.ProtoParseError, r"net.prototxt: is a FIFO"):  # no hang
        caffe_fx.compile(fifo)
    with strict_raises(errors.WeightsError, rf"{tmp_path}: is a folder; a caffemodel"):
        caffe_fx.compile(net(""), str(tmp_path))
    with strict_raises(errors.WeightsError, r"/dev/zero: is a character device"):
        caffe_fx.compile(net(""), "/dev/zero")


def test_prototxt_size_cap(tmp_path, monkeypatch):
    p = tmp_path / "big.prototxt"
    p.write_text(net(layer("r", "ReLU")) + "# padding\n" * 200)
    monkeypatch.setenv("CAFFE_FX_MAX_PROTOTXT_BYTES", "1000")
    with strict_raises(errors.ProtoParseError, r"big.prototxt: \d+ bytes is larger than the "
                                               r"1000 bytes allowed"):
        caffe_fx.compile(p)


# Root reads and writes files whatever their mode; these sysfs entries refuse root too
# (a write-only file, a folder whose entries the kernel makes), where the kernel has them.
ROOT_UNREADABLE = Path("/sys/bus/pci/rescan")
ROOT_UNWRITABLE = Path("/sys/kernel")


def test_unreadable_prototxt(tmp_path):
    p = tmp_path / "net.prototxt"
    p.write_text(net(""))
    p.chmod(0)
    if os.access(p, os.R_OK):
        if not ROOT_UNREADABLE.exists():
            pytest.skip(f"this user reads files whatever their mode, and {ROOT_UNREADABLE} "
                        "is absent")
        p = ROOT_UNREADABLE
    with strict_raises(errors.ProtoParseError, r"[Pp]ermission denied"):
        caffe_fx.compile(p)


# ------------------------------------------------------------------ weights

IP = net(layer("ip", "InnerProduct", "inner_product_param { num_output: 2 }"),
         "dim: 1 dim: 3")


def test_hdf5_layer_that_is_a_dataset(tmp_path):
    path = tmp_path / "w.caffemodel.h5"
    with h5py.File(path, "w") as f:
        f.create_group("data")["ip"] = np.ones(3, np.float32)
    with strict_raises(errors.WeightsError, r"/data/ip is a dataset where a layer's group"):
        caffe_fx.compile(IP, path)


def test_hdf5_declared_far_beyond_the_file(tmp_path):
    path = tmp_path / "w.caffemodel.h5"
    with h5py.File(path, "w") as f:  # 40 GB declared (as float32 > INT_MAX values)
        f.create_group("data/ip").create_dataset("0", shape=(100000, 100000), dtype="f4")
        f["data/ip"].create_dataset("1", shape=(20000, 20000), dtype="f4")  # 1.6 GB
    assert path.stat().st_size < 10_000
    with strict_raises(errors.ShapeError, r"dataset /data/ip/0: shape \[100000, 100000\]"):
        read_stored(path)
    with h5py.File(path, "r+") as f:
        del f["data/ip/0"]
        f["data/ip/0"] = np.ones((2, 3), np.float32)
    with strict_raises(errors.WeightsError, r"dataset /data/ip/1 declares shape \[20000, "
                                            r"20000\] \(1600000000 bytes\) but the file stores 0"):
        read_stored(path)


def test_hdf5_tiny_chunks(tmp_path):
    path = tmp_path / "w.caffemodel.h5"
    with h5py.File(path, "w") as f:
        f.create_group("data/ip").create_dataset("0", data=np.ones((300, 300), np.float32),
                                                 chunks=(1, 1))
    with strict_raises(errors.WeightsError, r"split into 90000 chunks of \[1, 1\]; allowed: "
                                            r"at most 65536"):
        read_stored(path)
    with h5py.File(path, "w") as f:  # compressed zeros are fine: stored, just small
        f.create_group("data/ip").create_dataset("0", data=np.zeros((2, 3), np.float32),
                                                 chunks=(1, 3), compression="gzip")
        f["data/ip/1"] = np.zeros(2, np.float32)
    assert caffe_fx.compile(IP, path).ip.weight.shape == (2, 3)


def test_npz_deflate_bomb_and_lying_header(tmp_path):
    bomb = tmp_path / "w.npz"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("ip.weight.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (4096, 8192)})
        for _ in range(8):
            f.write(bytes(1 << 24))
    assert bomb.stat().st_size < 200_000
    with strict_raises(errors.WeightsError, r"member ip.weight.npy declares 134217856 bytes "
                                            r"from \d+ compressed ones"):
        read_flat(bomb, "npz")
    lie = tmp_path / "lie.npz"
    header = tmp_path / "h.npy"
    with open(header, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (10000, 10000)})
        f.write(bytes(16))
    with zipfile.ZipFile(lie, "w") as zf:
        zf.write(header, "ip.weight.npy")
    with strict_raises(errors.WeightsError, r"its header declares shape \[10000, 10000\] "
                                            r"\(400000000 bytes\) but it holds \d+ bytes"):
        read_flat(lie, "npz")


def test_pt_with_an_expanded_tensor(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"ip.weight": torch.zeros(1).expand(30000, 30000)}, path)
    assert path.stat().st_size < 4096
    with strict_raises(errors.WeightsError, r"'ip.weight': a tensor of shape \[30000, 30000\] "
                                            r"and strides \[0, 0\] over a storage of 4 bytes"):
        read_flat(path, "pt")


def _field(number: int, payload: bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = b""
        while True:
            b, n = n & 0x7F, n >> 7
            if not n:
                return out + bytes([b])
            out += bytes([b | 0x80])
    return varint(number << 3 | 2) + varint(len(payload)) + payload


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_non_utf8_layer_names_in_binaries(tmp_path, version):
    blob = caffe_pb2.BlobProto()
    blob.shape.dim.extend([2])
    blob.data.extend([1, 2])
    name = b"ip\xff\xfe"
    if version == "V2":
        data = _field(100, _field(1, name) + _field(2, b"InnerProduct")
                      + _field(7, blob.SerializeToString()))
        field = r"layer\[0\].name"
    else:  # V1LayerParameter: name 4, type 5 (enum INNER_PRODUCT = 14), blobs 6
        data = _field(2, _field(4, name) + bytes([5 << 3, 14])
                      + _field(6, blob.SerializeToString()))
        field = r"layers\[0\].name"
    path = tmp_path / "w.caffemodel"
    path.write_bytes(data)
    with strict_raises(errors.WeightsError, field + r" = b'ip\\xff\\xfe' is not valid UTF-8"):
        caffe_fx.compile(IP, path)


# ------------------------------------------------------------------ writes

def test_save_into_a_read_only_folder(tmp_path):
    gm = caffe_fx.compile(IP)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root
            if not ROOT_UNWRITABLE.is_dir():
                pytest.skip("this user writes into read-only folders, and "
                            f"{ROOT_UNWRITABLE} is absent")
            ro = ROOT_UNWRITABLE
        with strict_raises(errors.WriteError, re.escape(str(ro / "w.caffemodel"))
                           + r": cannot write it"):
            caffe_fx.save_caffemodel(ro / "w.caffemodel", gm)
        assert not (ro / "w.caffemodel").exists()
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_save_into_a_missing_folder_is_an_error(tmp_path):
    """Issue #12: a missing output folder is a caffe_fx error, never a folder made from a
    mistyped path; nothing is left behind."""
    gm = caffe_fx.compile(IP)
    (tmp_path / "file").write_text("x")
    with strict_raises(errors.WriteError, r"the folder .*file/sub does not exist"):
        caffe_fx.save_caffemodel(tmp_path / "file" / "sub" / "w.caffemodel", gm)
    with strict_raises(errors.WriteError, r"the folder .*new does not exist; make it first"):
        caffe_fx.save_caffemodel(tmp_path / "new" / "w.caffemodel", gm)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    (tmp_path / "new").mkdir()
    assert caffe_fx.save_caffemodel(tmp_path / "new" / "w.caffemodel", gm).exists()


def test_stale_temporaries_of_a_dead_writer_are_cleaned(tmp_path):
    gm = caffe_fx.compile(IP)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a process id that no longer runs
    stale = tmp_path / f".w.caffemodel.{pid}.abc123.tmp"
    stale.write_bytes(b"half a caffemodel")
    mine = tmp_path / f".w.caffemodel.{os.getpid()}.live.tmp"  # a live writer's: kept
    mine.write_bytes(b"being written")
    caffe_fx.save_caffemodel(tmp_path / "w.caffemodel", gm)
    assert not stale.exists() and mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name, "w.caffemodel"]


def test_a_new_npy_folder_is_all_or_nothing(tmp_path, monkeypatch):
    from caffe_fx import weights_io

    arrays = {"a": np.ones(2, np.float32), "b": np.zeros(3, np.float32)}
    calls = []
    real = np.lib.format.write_array

    def failing(f, arr, **kw):
        calls.append(arr.shape)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(f, arr, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with strict_raises(errors.WriteError, r"out: cannot write it: No space left"):
        weights_io.write_flat(tmp_path / "out", arrays, "npy")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary
    monkeypatch.setattr(np.lib.format, "write_array", real)
    weights_io.write_flat(tmp_path / "out", arrays, "npy")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.npy", "b.npy"]


# ------------------------------------------------------------------ nothing silent

def test_weights_that_fit_no_layer_warn_once_or_raise_with_strict(tmp_path):
    other = net(layer("renamed", "InnerProduct", "inner_product_param { num_output: 2 }"),
                "dim: 1 dim: 3")
    path = caffe_fx.save_caffemodel(tmp_path / "w.caffemodel", caffe_fx.compile(other))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        caffe_fx.compile(IP, path)
    assert [w.category for w in caught] == [errors.UnusedWeightsWarning]
    message = str(caught[0].message)
    assert "1 layer(s) of the net not filled from them (they keep Caffe's fillers): ip" \
        in message
    assert "1 layer(s) in them the net does not have (Ignoring source layer): renamed" \
        in message
    assert caught[0].filename == __file__  # points at the caller
    with strict_raises(errors.WeightsError, r"the weights do not fit the net.*strict=True"):
        caffe_fx.compile(IP, path, strict=True)
    # weights that fit: no warning, strict passes
    good = caffe_fx.save_caffemodel(tmp_path / "g.caffemodel", caffe_fx.compile(IP))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        caffe_fx.compile(IP, good, strict=True)


def test_weights_of_pruned_layers_are_not_reported(tmp_path):
    two = IP + layer("ip2", "InnerProduct", "inner_product_param { num_output: 2 }", "ip")
    path = caffe_fx.save_caffemodel(tmp_path / "w.caffemodel", caffe_fx.compile(two))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        caffe_fx.compile(two, path, outputs=["ip"], strict=True)


def test_a_net_whose_blobs_silence_swallows_returns_them():
    body = layer("r", "ReLU") + 'layer { name: "s" type: "Silence" bottom: "r" bottom: "data" }'
    gm = caffe_fx.compile(net(body, "dim: 2 dim: 3"))
    x = torch.tensor([[-1.0, 2.0, 3.0], [4.0, -5.0, 6.0]])
    out = gm(data=x)
    assert list(out) == ["r", "data"]  # Caffe's names, not the split blob's
    assert torch.equal(out["r"], x.clamp(min=0))
    assert gm.meta["caffe"].outputs == ["r", "data"]


def test_a_forward_on_the_wrong_shape_names_the_layer():
    gm = caffe_fx.compile(net(layer("ip1", "InnerProduct",
                                    "inner_product_param { num_output: 4 }"),
                              "dim: 2 dim: 3 dim: 8 dim: 8"))
    with strict_raises(errors.ShapeError, r"layer 'ip1' \(InnerProduct\): bottom of shape "
                                          r"\[2, 3, 9, 9\] gives 243 values per item from "
                                          r"axis 1 on; the weight takes K = 192 \(the net was "
                                          r"set up with bottom shape \[2, 3, 8, 8\]\)"):
        gm(data=torch.zeros(2, 3, 9, 9))
    x = torch.randn(5, 3, 8, 8)  # another batch size is fine
    ref = gm(data=x)["ip1"]
    scripted = torch.jit.script(gm)
    assert torch.equal(scripted(data=x)["ip1"], ref)
    with pytest.raises(torch.jit.Error, match=r"layer 'ip1' \(InnerProduct\): the bottom gives "
                                           r"243 values .*K = 192"):
        scripted(data=torch.zeros(2, 3, 9, 9))
    exported = torch.export.export(gm, (), {"data": x})
    assert torch.equal(exported.module()(data=x)["ip1"], ref)


def test_a_forward_with_the_wrong_channels_names_the_convolution():
    gm = caffe_fx.compile(net(layer("c1", "Convolution",
                                    "convolution_param { num_output: 4 kernel_size: 3 }")))
    for x in (torch.zeros(1, 4, 8, 8), torch.zeros(3, 8, 8)):
        with strict_raises(errors.ShapeError, rf"layer 'c1' \(Convolution\): bottom of shape "
                                              rf"\{list(x.shape)}; the weight takes 4-D "
                                              r"bottoms with 3 channels at axis 1"):
            gm(data=x)
    x = torch.randn(2, 3, 10, 10)  # other batch and image sizes are fine
    ref = gm(data=x)["c1"]
    assert ref.shape == (2, 4, 8, 8)
    assert torch.equal(torch.jit.script(gm)(data=x)["c1"], ref)
    assert torch.equal(torch.export.export(gm, (), {"data": x}).module()(data=x)["c1"], ref)


def test_torch_compile_still_works_with_the_shape_check():
    gm = caffe_fx.compile(net(layer("ip1", "InnerProduct",
                                    "inner_product_param { num_output: 4 }"),
                              "dim: 2 dim: 3 dim: 4 dim: 4"))
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(torch.compile(gm, backend="eager")(data=x)["ip1"],
                               gm(data=x)["ip1"])


# ------------------------------------------------------------------ fuzzer finds

REGRESSIONS = sorted((HERE / "regressions").glob("*.prototxt"))


@pytest.mark.parametrize("path", REGRESSIONS, ids=[p.stem for p in REGRESSIONS])
def test_committed_fuzzer_finds(path):
    weights = next(iter(sorted(path.parent.glob(path.stem + ".w*"))), None)
    try:
        caffe_fx.compile(path, weights)
    except errors.CaffeFxError as e:
        assert type(e) is not errors.CaffeFxError, e


def test_blobs_that_cannot_be_allocated_are_a_clear_error():
    # 2^31-1 weights pass Caffe's INT_MAX check but need 8 GiB: under a 1 GiB address-space
    # cap the allocator refuses, and compile says which layer and shapes.
    import subprocess
    import sys
    import textwrap
    code = textwrap.dedent("""
        import resource
        from pathlib import Path
        import caffe_fx
        vm = [int(l.split()[1]) * 1024 for l in Path("/proc/self/status").read_text()
              .splitlines() if l.startswith("VmSize")][0]
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), vm + (1 << 30)))
        try:
            caffe_fx.compile('layer { name: "data" type: "Input" top: "data" input_param '
                             '{ shape { dim: 1 dim: 1 } } } layer { name: "ip" type: '
                             '"InnerProduct" bottom: "data" top: "ip" inner_product_param '
                             '{ num_output: 2147483647 } }')
        except caffe_fx.errors.ShapeError as e:
            print(e)
        """)
    root = HERE.parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert "layer 'ip' (InnerProduct): cannot allocate its blobs of shapes " \
        "[[2147483647, 1], [2147483647]]" in out.stdout, out.stderr[-2000:]
