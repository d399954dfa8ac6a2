"""The loader-safety results of issue #12 that must keep holding: compiling never imports a
Python layer's module without trust (even when outputs= prunes the layer), no reader
unpickles (.pt, .pth, .npz, .npy), nothing is overwritten without force, and a writer
killed with SIGKILL leaves nothing partial at the target (its temporary is cleaned by
the next write)."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx import errors
from caffe_fx.weights_io import read_flat, write_flat

ROOT = Path(__file__).resolve().parents[2]
NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
        inner_product_param { num_output: 2 } }
layer { name: "py" type: "Python" bottom: "data" top: "py"
        python_param { module: "caffe_fx_evil_layer" layer: "Evil" } }
"""


class _Payload:
    """Unpickling this creates the marker file: proof that a reader ran pickle code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pickle ran"))


@pytest.mark.parametrize("outputs", [None, ["ip"]], ids=["whole_net", "pruned_by_outputs"])
def test_python_layer_not_imported_without_trust(tmp_path, monkeypatch, outputs):
    marker = tmp_path / "imported"
    (tmp_path / "caffe_fx_evil_layer.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Evil: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(errors.UnsupportedFieldError, match=r"Python layers 'py' .*"
                                                           r"trust_python_layers=True"):
        caffe_fx.compile(NET, outputs=outputs)
    assert not marker.exists() and "caffe_fx_evil_layer" not in sys.modules


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_no_pickle_from_torch_files(tmp_path, suffix):
    marker = tmp_path / "ran"
    path = tmp_path / f"w{suffix}"
    with open(path, "wb") as f:  # torch.save's zip layout with a payload inside
        torch.save({"ip.weight": _Payload(marker)}, f)
    with pytest.raises(errors.WeightsError, match=r"unreadable pt weights file"):
        read_flat(path, "pt")
    assert not marker.exists()


def test_no_pickle_from_npz_or_npy(tmp_path):
    marker = tmp_path / "ran"
    obj = np.array([_Payload(marker)], dtype=object)
    npz = tmp_path / "w.npz"
    np.savez(npz, **{"ip.weight": obj})
    with pytest.raises(errors.WeightsError, match=r"holds Python objects \(a pickle\)"):
        read_flat(npz, "npz")
    folder = tmp_path / "w_npy"
    folder.mkdir()
    np.save(folder / "ip.weight.npy", obj, allow_pickle=True)
    with pytest.raises(errors.WeightsError, match=r"holds Python objects \(a pickle\)"):
        read_flat(folder, "npy")
    with zipfile.ZipFile(npz) as zf:  # the payload really is in there
        assert pickle.PROTO in zf.read("ip.weight.npy")
    assert not marker.exists()


def test_no_overwrite_without_force(tmp_path):
    gm = caffe_fx.compile(NET.split('layer { name: "py"')[0])
    target = tmp_path / "w.caffemodel"
    target.write_bytes(b"keep me")
    with pytest.raises(errors.OutputExistsError, match=r"already exists; refusing"):
        caffe_fx.save_caffemodel(target, gm)
    with pytest.raises(errors.OutputExistsError, match=r"already exists; refusing"):
        write_flat(tmp_path / "w.caffemodel", {"a": np.ones(1, np.float32)}, "npz")
    assert target.read_bytes() == b"keep me"
    caffe_fx.save_caffemodel(target, gm, force=True)
    assert target.read_bytes() != b"keep me"


def test_nothing_partial_after_kill_9(tmp_path):
    target = tmp_path / "w.caffemodel"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from caffe_fx._atomic import atomic_write
        with atomic_write({str(target)!r}) as f:
            f.write(b"half a caffemodel" * 1000)
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        """)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(30)
    assert not target.exists()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".w.caffemodel.{child.pid}.")
    gm = caffe_fx.compile(NET.split('layer { name: "py"')[0])
    caffe_fx.save_caffemodel(target, gm)
    assert [p.name for p in tmp_path.iterdir()] == ["w.caffemodel"]
