"""`caffe-fx convert` (caffe_fx/cli/convert.py): every format, both directions.

Expected arrays are what real Caffe recorded: tests/golden/convert/<net>.caffemodel was
saved by Caffe itself and <net>.npz holds its param/<layer>/<i> and data/<blob> after a
forward pass (tools/make_convert_goldens.py).  The `oracle` tests hand the caffemodels we
write back to real Caffe and require the very same outputs.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.cli import main
from caffe_fx.frontend.read import read_weights
from caffe_fx.proto import caffe_pb2
from caffe_fx.weights_io import Progress
from tests.golden.harness import relative_error
from tests.nets.oracle import MODELS, ORACLE

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "convert"
NETS = ("small", "named")
FLAT = ("pt", "npz", "npy", "json", "safetensors")
OUTS = {"pt": "w.pt", "h5": "w.h5", "npz": "w.npz", "npy": "w_npy/", "json": "w.json",
        "safetensors": "w.safetensors"}


def golden(net: str) -> tuple[Path, Path, dict[str, np.ndarray]]:
    with np.load(GOLDEN / f"{net}.npz") as f:
        record = {k: f[k] for k in f.files}
    return GOLDEN / f"{net}.prototxt", GOLDEN / f"{net}.caffemodel", record


def caffe_params(record: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """param/<layer>/<i> -> {"<layer>.<i>": array} (layer names may hold '/')."""
    out = {}
    for k, v in record.items():
        if k.startswith("param/"):
            layer, i = k[len("param/"):].rsplit("/", 1)
            out[f"{layer}.{i}"] = v
    return out


def read_independently(path: Path, fmt: str) -> dict[str, np.ndarray]:
    """Each format read by its own library, not by caffe_fx."""
    if fmt == "pt":
        return {k: v.numpy() for k, v in torch.load(path, weights_only=True).items()}
    if fmt == "h5":
        with h5py.File(path, "r") as f:
            return {f"{layer}.{i}": np.asarray(f["data"][layer][i])
                    for layer in f["data"] for i in f["data"][layer]}
    if fmt == "npz":
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    if fmt == "npy":
        return {urllib.parse.unquote(p.name[:-4]): np.load(p) for p in path.glob("*.npy")}
    if fmt == "json":
        doc = json.loads(path.read_text())
        return {k: np.asarray(t["data"], np.float32).reshape(t["shape"])
                for k, t in doc["tensors"].items()}
    if fmt == "safetensors":
        from safetensors.numpy import load_file
        return load_file(str(path))
    raise AssertionError(fmt)


def convert(*args: object) -> int:
    return main(["convert", *map(str, args)])


def assert_same_arrays(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for k, w in want.items():
        assert got[k].dtype == np.float32, k
        assert got[k].shape == w.shape, k
        np.testing.assert_array_equal(got[k], w, err_msg=k)


def skip_missing(fmt: str) -> None:
    if fmt == "safetensors":
        pytest.importorskip("safetensors", reason="the optional package safetensors")


# ------------------------------------------------------------------ caffemodel -> format

# 'conv/1x1' (in "named") cannot be an HDF5 layer name: the refusal test covers that pair.
@pytest.mark.parametrize("net,fmt", [(net, fmt) for net in NETS for fmt in OUTS
                                     if (net, fmt) != ("named", "h5")])
def test_caffemodel_to_every_format_holds_caffes_params(tmp_path, net, fmt):
    skip_missing(fmt)
    _, model, record = golden(net)
    out = tmp_path / OUTS[fmt]
    assert convert(model, "-o", out) == 0
    assert_same_arrays(read_independently(out, fmt), caffe_params(record))


@pytest.mark.parametrize("net", NETS)
def test_prototxt_keys_load_into_the_compiled_net(tmp_path, net):
    proto, model, record = golden(net)
    out = tmp_path / "sd.pt"
    assert convert(model, "-o", out, "--prototxt", proto) == 0
    state = torch.load(out, weights_only=True)
    gm = caffe_fx.compile(proto)
    assert list(state) == list(gm.state_dict())
    gm.load_state_dict(state)  # strict: every key, every shape
    inputs = {k[len("input/"):]: torch.from_numpy(v) for k, v in record.items()
              if k.startswith("input/")}
    outs = gm(**inputs)
    for blob, value in outs.items():
        assert relative_error(value.detach().numpy(), record[f"data/{blob}"]) < 1e-5, blob


def test_prototxt_keys_in_every_flat_format(tmp_path):
    proto, model, _ = golden("small")
    want = {k: v.numpy() for k, v in caffe_fx.compile(proto, model).state_dict().items()}
    for fmt in FLAT:
        if fmt == "safetensors" and not _has_safetensors():
            continue
        out = tmp_path / OUTS[fmt]
        assert convert(model, "-o", out, "--prototxt", proto) == 0
        assert_same_arrays(read_independently(out, fmt), want)


def _has_safetensors() -> bool:
    try:
        import safetensors  # noqa: F401
    except ImportError:
        return False
    return True


def test_named_with_slash_round_trips_through_an_npy_folder(tmp_path):
    _, model, record = golden("named")
    assert convert(model, "-o", tmp_path / "w_npy/") == 0
    assert (tmp_path / "w_npy" / "conv%2F1x1.0.npy").is_file()
    assert convert(tmp_path / "w_npy", "-o", tmp_path / "back.caffemodel") == 0
    back = read_weights(tmp_path / "back.caffemodel")
    np.testing.assert_array_equal(back["conv/1x1"][0].array, record["param/conv/1x1/0"])


def test_layers_selects_names_and_globs(tmp_path):
    _, model, record = golden("small")
    out = tmp_path / "some.npz"
    assert convert(model, "-o", out, "--layers", "fc,bn*") == 0
    want = {k: v for k, v in caffe_params(record).items() if k.startswith(("fc.", "bn1."))}
    assert_same_arrays(read_independently(out, "npz"), want)


def test_default_output_and_the_convert_shorthand(tmp_path, capsys):
    _, model, record = golden("small")
    local = tmp_path / "small.caffemodel"
    shutil.copy(model, local)
    assert main([str(local)]) == 0  # `caffe-fx MODEL` is `caffe-fx convert MODEL`
    assert_same_arrays(read_independently(tmp_path / "small.caffemodel.pt", "pt"),
                       caffe_params(record))
    assert "wrote" in capsys.readouterr().out


# ------------------------------------------------------------------ format -> caffemodel

@pytest.mark.parametrize("back", ["caffemodel", "caffemodel.h5"])
@pytest.mark.parametrize("fmt", list(OUTS))
def test_every_format_writes_back_a_caffemodel(tmp_path, fmt, back):
    skip_missing(fmt)
    proto, model, record = golden("small")
    mid = tmp_path / OUTS[fmt]
    assert convert(model, "-o", mid) == 0
    out = tmp_path / f"back.{back}"
    assert convert(mid, "-o", out, "--prototxt", proto) == 0
    got = {f"{n}.{i}": b.array for n, bl in read_weights(out).items() for i, b in enumerate(bl)}
    assert_same_arrays(got, caffe_params(record))


def test_written_caffemodel_holds_the_whole_net(tmp_path):
    proto, model, _ = golden("small")
    out = tmp_path / "back.caffemodel"
    assert convert(model, "-o", tmp_path / "sd.pt", "--prototxt", proto) == 0
    assert convert(tmp_path / "sd.pt", "-o", out, "--prototxt", proto) == 0
    ours = caffe_pb2.NetParameter.FromString(out.read_bytes())
    caffes = caffe_pb2.NetParameter.FromString(model.read_bytes())
    # Caffe's own snapshot of the same net: same layers, types, wiring, blob shapes.
    assert [(lp.name, lp.type, list(lp.bottom), list(lp.top)) for lp in ours.layer] == \
        [(lp.name, lp.type, list(lp.bottom), list(lp.top)) for lp in caffes.layer]
    assert [[list(b.shape.dim) for b in lp.blobs] for lp in ours.layer] == \
        [[list(b.shape.dim) for b in lp.blobs] for lp in caffes.layer]
    assert ours.name == caffes.name == "small"


# ------------------------------------------------------------------ real Caffe loads them

def oracle_forward(net: Path, weights: Path, inputs: dict[str, np.ndarray],
                   workdir: Path) -> dict[str, np.ndarray]:
    np.savez(workdir / "in.npz", **inputs)
    proc = subprocess.run([str(ORACLE), "forward", str(net), "--weights", str(weights),
                           "--inputs", str(workdir / "in.npz"), "--out",
                           str(workdir / "out.npz")], check=False, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(workdir / "out.npz") as f:
        return {k: f[k] for k in f.files if k.startswith(("data/", "param/"))}


@pytest.mark.oracle
@pytest.mark.parametrize("net, back", [("small", "caffemodel"), ("small", "caffemodel.h5"),
                                       ("named", "caffemodel")])
def test_real_caffe_runs_our_caffemodel_to_the_same_outputs(tmp_path, net, back):
    proto, model, record = golden(net)
    assert convert(model, "-o", tmp_path / "sd.pt", "--prototxt", proto) == 0
    ours = tmp_path / f"ours.{back}"
    assert convert(tmp_path / "sd.pt", "-o", ours, "--prototxt", proto) == 0
    inputs = {k[len("input/"):]: v for k, v in record.items() if k.startswith("input/")}
    got = oracle_forward(proto, ours, inputs, tmp_path)
    # Against Caffe on the original file in the same run: the golden's own blobs came from
    # another machine, whose OpenBLAS may round a GEMM differently (5e-7 seen).
    (tmp_path / "original").mkdir()
    want = oracle_forward(proto, model, inputs, tmp_path / "original")
    assert_same_arrays(got, want)
    assert sorted(want) == sorted(k for k in record if k.startswith(("data/", "param/")))


LENET = MODELS / "BVLC+caffe" / "examples" / "mnist" / "lenet.prototxt"


@pytest.mark.oracle
@pytest.mark.slow
def test_lenet_through_every_format_and_back_into_real_caffe(tmp_path):
    if not LENET.exists():
        pytest.skip(f"needs {LENET}")
    inputs = {"data": np.random.default_rng(0).standard_normal((2, 1, 28, 28),
                                                               dtype=np.float32)}
    np.savez(tmp_path / "in.npz", **inputs)
    model = tmp_path / "lenet.caffemodel"
    subprocess.run([str(ORACLE), "forward", str(LENET), "--randomize", "7", "--save-weights",
                    str(model), "--inputs", str(tmp_path / "in.npz"), "--out",
                    str(tmp_path / "o.npz")], check=True, capture_output=True)
    with np.load(tmp_path / "o.npz") as f:
        record = {k: f[k] for k in f.files if k.startswith(("data/", "param/"))}
    params = caffe_params(record)
    for fmt, name in OUTS.items():
        if fmt == "safetensors" and not _has_safetensors():
            continue
        assert convert(model, "-o", tmp_path / name) == 0
        assert_same_arrays(read_independently(tmp_path / name, fmt), params)
    with tempfile.TemporaryDirectory(dir=tmp_path) as work:
        for back in ("caffemodel", "caffemodel.h5"):
            ours = tmp_path / f"ours.{back}"
            assert convert(tmp_path / "w.npz", "-o", ours, "--prototxt", LENET) == 0
            assert_same_arrays(oracle_forward(LENET, ours, inputs, Path(work)), record)


# ------------------------------------------------------------------ errors

def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_existing_output_needs_force(tmp_path, capsys):
    _, model, record = golden("small")
    out = tmp_path / "w.pt"
    out.write_bytes(b"keep me")
    assert convert(model, "-o", out) == 1
    assert "w.pt: already exists; refusing to overwrite" in one_error_line(capsys)
    assert out.read_bytes() == b"keep me"
    assert convert(model, "-o", out, "--force") == 0
    assert_same_arrays(read_independently(out, "pt"), caffe_params(record))


def test_existing_npy_files_need_force(tmp_path, capsys):
    _, model, _ = golden("small")
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "fc.0.npy").write_bytes(b"keep me")
    (folder / "notes.txt").write_text("not ours")
    assert convert(model, "-o", folder) == 1
    assert "fc.0.npy: already exists" in one_error_line(capsys)
    assert not (folder / "conv1.0.npy").exists()  # refused before writing anything
    assert convert(model, "-o", folder, "--force") == 0
    assert (folder / "notes.txt").read_text() == "not ours"  # nothing else is touched
    assert np.load(folder / "fc.0.npy").shape == (5, 64)


def test_unknown_suffix_lists_the_allowed_ones(tmp_path, capsys):
    _, model, _ = golden("small")
    assert convert(model, "-o", tmp_path / "w.weights") == 1
    line = one_error_line(capsys)
    assert "unknown output suffix '.weights'" in line
    for suffix in (".pt", ".h5", ".npz", ".json", ".safetensors", ".caffemodel", "folder"):
        assert suffix in line


def test_layers_matching_nothing_lists_the_layers(tmp_path, capsys):
    _, model, _ = golden("small")
    assert convert(model, "-o", tmp_path / "w.pt", "--layers", "conv9,fc") == 1
    line = one_error_line(capsys)
    assert "--layers conv9 matches no layer" in line
    assert "available: conv1, bn1, scale1, prelu1, fc" in line
    assert not (tmp_path / "w.pt").exists()


@pytest.mark.parametrize("name, content", [
    ("bad.caffemodel", bytes(range(256)) * 4),
    ("bad.pt", b"not a pickle"),
    ("bad.npz", b"PK not a zip"),
    ("bad.json", b'{"tensors": 1}'),
    ("missing.caffemodel", None),
])
def test_unreadable_input_names_the_file(tmp_path, capsys, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert convert(path, "-o", tmp_path / "out.npz") == 1
    assert name in one_error_line(capsys)
    assert not (tmp_path / "out.npz").exists()


def test_state_dict_keys_need_the_prototxt(tmp_path, capsys):
    proto, model, _ = golden("small")
    assert convert(model, "-o", tmp_path / "sd.pt", "--prototxt", proto) == 0
    capsys.readouterr()
    assert convert(tmp_path / "sd.pt", "-o", tmp_path / "back.caffemodel") == 1
    assert "'conv1.weight'" in (line := one_error_line(capsys)) and "--prototxt" in line


def test_weights_that_do_not_fit_the_net(tmp_path, capsys):
    proto, _, _ = golden("small")
    _, other, _ = golden("named")
    assert convert(other, "-o", tmp_path / "w.pt", "--prototxt", proto) == 0  # no shared layer
    assert "skipped 5 layer(s)" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"fc.0": np.zeros((5, 63), np.float32), "fc.1": np.zeros(5, np.float32)})
    assert convert(bad, "-o", tmp_path / "bad.caffemodel", "--prototxt", proto) == 1
    assert "layer 'fc' (InnerProduct): blob 0 (weight) has shape [5, 63]" in \
        one_error_line(capsys)


def test_every_layer_that_does_not_fit_is_named_at_once(tmp_path, capsys):
    proto, _, _ = golden("small")
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"conv1.0": np.zeros((4, 3, 5, 5), np.float32),
                     "conv1.1": np.zeros(4, np.float32),
                     "fc.0": np.zeros((5, 63), np.float32), "fc.1": np.zeros(6, np.float32)})
    assert convert(bad, "-o", tmp_path / "bad.caffemodel", "--prototxt", proto) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and not (tmp_path / "bad.caffemodel").exists()
    assert "layer 'conv1' (Convolution): blob 0 (weight) has shape [4, 3, 5, 5]" in err[0]
    assert "layer 'fc' (InnerProduct): blob 0 (weight) has shape [5, 63] in the weights " \
           "but [5, 64] in the net" in err[1]
    assert "blob 1 (bias) has shape [6] in the weights but [5] in the net" in err[1]


def test_hdf5_refuses_layer_names_with_a_slash(tmp_path, capsys):
    _, model, _ = golden("named")
    assert convert(model, "-o", tmp_path / "w.caffemodel.h5") == 1
    assert "conv/1x1" in one_error_line(capsys)
    assert not (tmp_path / "w.caffemodel.h5").exists()


def test_missing_safetensors_names_the_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "safetensors.numpy", None)
    _, model, _ = golden("small")
    assert convert(model, "-o", tmp_path / "w.safetensors") == 1
    assert "pip install safetensors" in one_error_line(capsys)
    from caffe_fx.errors import MissingDependencyError
    from caffe_fx.weights_io import write_flat
    with pytest.raises(MissingDependencyError, match="'safetensors'"):
        write_flat(tmp_path / "w.safetensors", {"a.0": np.zeros(1)}, "safetensors")


# ------------------------------------------------------------------ progress bar

class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal_and_large_work():
    tty = _Tty()
    bar = Progress(4 << 20, "writing w.pt", stream=tty, min_bytes=1 << 20)
    for _ in range(4):
        bar.advance(1 << 20)
    bar.close()
    assert tty.getvalue().endswith("100% 4/4 MiB\n") and "\r" in tty.getvalue()
    for stream, size in ((io.StringIO(), 4 << 20), (_Tty(), 1024)):
        quiet = Progress(size, "x", stream=stream, min_bytes=1 << 20)
        quiet.advance(size)
        quiet.close()
        assert stream.getvalue() == ""


@pytest.mark.parametrize("suffix", ["pt", "npz"])
def test_complex_values_are_refused_in_every_format(tmp_path, capsys, suffix):
    """torch's .to(float32) drops a complex tensor's imaginary part (a UserWarning, exit
    0): refused as the same values in an .npz are."""
    values = np.array([1 + 2j, 3 - 4j], np.complex64)
    path = tmp_path / f"w.{suffix}"
    if suffix == "pt":
        torch.save({"conv1.0": torch.from_numpy(values)}, path)
    else:
        np.savez(path, **{"conv1.0": values})
    assert convert(path, "-o", tmp_path / "w.caffemodel") == 1
    assert "holds complex64 values; Caffe blobs hold numbers" in one_error_line(capsys)
    assert not (tmp_path / "w.caffemodel").exists()
