"""`caffe-fx export --compiled`: the AOTInductor package, and torch.compile's caches.

The default run checks what needs no C++ build: the flag's argument errors, the missing
compiler, the refusals torch.export gives (a data-dependent DetectionOutput, an untrusted
Python layer: the same error as the plain .pt2), and that a failed or wrong build leaves
no file (an existing one untouched).  Building a package of even a tiny net takes 30-80 s
on 2 cores, and a cold torch.compile 20-50 s, so the real builds and the cache checks in
fresh processes run only with CAFFE_FX_AOT=1 (4-5 minutes on 2 busy cores):
`CAFFE_FX_AOT=1 python -m pytest -q tests/cli/test_export_compiled.py`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import caffe_fx
from caffe_fx.cli import main
from caffe_fx.proto import caffe_pb2

ROOT = Path(__file__).resolve().parents[2]
aot = pytest.mark.skipif(os.environ.get("CAFFE_FX_AOT") != "1",
                         reason="builds C++ (30 s to minutes on 2 cores): set CAFFE_FX_AOT=1")

TINY = """\
name: "tiny"
input: "data"
input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
        inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

# DetectionOutput's top has a data-dependent row count (CORNER: random priors decode).
DETECT = """\
name: "detect"
input: "loc"
input_shape { dim: 1 dim: 16 }
input: "conf"
input_shape { dim: 1 dim: 12 }
input: "prior"
input_shape { dim: 1 dim: 2 dim: 16 }
layer { name: "detect" type: "DetectionOutput" bottom: "loc" bottom: "conf"
        bottom: "prior" top: "det"
        detection_output_param { num_classes: 3 nms_param { nms_threshold: 0.45 top_k: 10 }
                                 keep_top_k: 8 confidence_threshold: 0.05 code_type: CORNER } }
"""

PYTHON = """\
name: "py"
input: "data"
input_shape { dim: 1 dim: 4 }
layer { name: "double" type: "Python" bottom: "data" top: "out"
        python_param { module: "my_layers" layer: "Double" } }
"""


def _layers_only(path: Path) -> None:
    """A caffemodel naming the net's layers, without blobs (the nets have none)."""
    net = caffe_pb2.NetParameter(name="w")
    for name, kind in (("detect", "DetectionOutput"), ("double", "Python")):
        layer = net.layer.add()
        layer.name, layer.type = name, kind
    path.write_bytes(net.SerializeToString())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], torch.fx.GraphModule]:
    d = tmp_path_factory.mktemp("tiny")
    proto, weights = d / "tiny.prototxt", d / "tiny.caffemodel"
    proto.write_text(TINY)
    gm = caffe_fx.compile(proto)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in gm.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    caffe_fx.save_caffemodel(weights, gm, proto)
    return ["export", str(proto), str(weights)], caffe_fx.compile(proto, weights)


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("caffe-fx export: error: ") and captured.err.count("\n") == 1
    return captured.err


# ------------------------------------------------------------------ no C++ build needed

@pytest.mark.parametrize("suffix", [".onnx", ".ts"])
def test_compiled_writes_only_pt2(tiny, tmp_path: Path, suffix: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv, _ = tiny
    assert main(argv + ["-o", str(tmp_path / f"n{suffix}"), "--compiled"]) == 1
    assert (f"--compiled writes an AOTInductor package, a .pt2 file; got '{suffix}'"
            in _error(capsys))
    assert not list(tmp_path.iterdir())


def test_refuses_to_overwrite_before_building(tiny, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv, _ = tiny
    out = tmp_path / "n.pt2"
    out.write_bytes(b"mine")
    assert main(argv + ["-o", str(out), "--compiled"]) == 1
    assert "already exists; refusing to overwrite it" in _error(capsys)
    assert out.read_bytes() == b"mine"


def test_missing_compiler_is_named_before_the_slow_part(
        tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    argv, _ = tiny
    monkeypatch.setenv("CXX", "no-such-c++")
    called = []
    monkeypatch.setattr("caffe_fx.compiler.compile", lambda *a, **k: called.append(a))
    assert main(argv + ["-o", str(tmp_path / "n.pt2"), "--compiled"]) == 1
    err = _error(capsys)
    assert "--compiled builds the package with a C++ compiler, and 'no-such-c++'" in err
    assert "CXX" in err and not called and not list(tmp_path.iterdir())


@pytest.mark.parametrize("net", [DETECT, PYTHON], ids=["data_dependent", "python_layer"])
def test_refused_as_torch_export_refuses(net: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    proto, weights = tmp_path / "net.prototxt", tmp_path / "w.caffemodel"
    proto.write_text(net)
    _layers_only(weights)
    argv = ["export", str(proto), str(weights)]
    out = tmp_path / "out" / "n.pt2"
    out.parent.mkdir()
    assert main(argv + ["-o", str(out)]) == 1
    plain = _error(capsys)
    assert main(argv + ["-o", str(out), "--compiled"]) == 1
    assert _error(capsys) == plain  # the same line as the torch.export program's
    if net is DETECT:
        assert ("torch.export export failed: ExportError: layer 'detect' (DetectionOutput): "
                "its top has a data-dependent number of rows") in plain
    else:
        assert "Python layers 'double' (python_param.module = 'my_layers') run user code" in plain
    assert not list(out.parent.iterdir())


def _fake_build(ep, package_path) -> str:
    package_path.write(b"half a package")
    raise RuntimeError("the C++ compiler was killed\nmore lines")


def test_failed_build_leaves_the_old_file(tiny, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv, _ = tiny
    out = tmp_path / "n.pt2"
    out.write_bytes(b"mine")
    monkeypatch.setattr("torch._inductor.aoti_compile_and_package", _fake_build)
    assert main(argv + ["-o", str(out), "--compiled", "--force"]) == 1
    assert ("AOTInductor compile failed: RuntimeError: the C++ compiler was killed; nothing "
            "was written") in _error(capsys)
    assert out.read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir()] == ["n.pt2"]  # no temporary file left


def test_a_package_that_differs_is_not_kept(tiny, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv, gm = tiny

    def build(ep, package_path) -> str:
        package_path.write(b"package")
        return "package"

    def load(f):
        assert f.read() == b"package"  # loads what was written
        return lambda **inputs: {k: v + 1e-3 for k, v in gm(**inputs).items()}

    monkeypatch.setattr("torch._inductor.aoti_compile_and_package", build)
    monkeypatch.setattr("torch._inductor.aoti_load_package", load)
    assert main(argv + ["-o", str(tmp_path / "n.pt2"), "--compiled"]) == 1
    err = _error(capsys)
    assert "the AOTInductor program does not reproduce output 'prob': max abs diff 0.001" in err
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------- real builds (CAFFE_FX_AOT=1)

def _python(code: str, env: dict[str, str] | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})}, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@aot
def test_package_loads_in_a_fresh_process_and_matches(tiny, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    argv, gm = tiny
    out = tmp_path / "tiny.pt2"
    t = time.perf_counter()
    assert main(argv + ["-o", str(out), "--compiled"]) == 0
    printed = capsys.readouterr().out
    print(f"AOTInductor build of the tiny net: {time.perf_counter() - t:.0f} s")
    assert printed.startswith(f"wrote {out} (AOTInductor, built in ")
    assert "outputs prob reproduced on a random input" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt2"]
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    torch.save(x, tmp_path / "x.pt")
    got = _python(f"""
        import json, time, torch, torch._inductor
        x = torch.load({str(tmp_path / 'x.pt')!r})
        t = time.perf_counter()
        m = torch._inductor.aoti_load_package({str(out)!r})
        load = time.perf_counter() - t
        out = m(data=x)
        print(json.dumps({{"load_s": load, "keys": list(out),
                          "prob": out["prob"].tolist()}}))
    """)
    print(f"its load in a fresh process: {got['load_s']:.3f} s")
    assert got["keys"] == ["prob"]
    torch.testing.assert_close(torch.tensor(got["prob"]), gm(data=x)["prob"].detach(),
                               rtol=1e-5, atol=1e-6)


CACHED = """
    import json, torch, caffe_fx
    from torch._dynamo.utils import counters
    gm = caffe_fx.compile({proto!r}, phase={phase!r})
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    c = torch.compile(gm)
    if {phase!r} == "train":
        c(data=x, label=torch.tensor([1.0, 3.0]))["loss"].backward()
    else:
        with torch.no_grad():
            c(data=x)
    print(json.dumps({{k: dict(counters[k]) for k in ("inductor", "aot_autograd")}}))
"""

TRAIN = TINY.replace('input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }',
                     'input_shape { dim: 2 dim: 3 dim: 8 dim: 8 }\ninput: "label"\n'
                     'input_shape { dim: 2 }').replace(
    'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }',
    'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }')


@aot
@pytest.mark.parametrize("phase", ["test", "train"])
def test_torch_compile_hits_the_cache_in_a_fresh_process(tmp_path: Path, phase: str) -> None:
    """The second process, on the same net read from another folder, compiles nothing:
    Inductor's FX graph cache hits (the C++ build is skipped).  Inference hits
    AOTAutograd's cache too; training bypasses it, as the Caffe-backward ops are
    autograd.Functions, which torch 2.13's AOTAutograd cache does not take."""
    first, second = tmp_path / "a", tmp_path / "b"
    for d in (first, second):
        d.mkdir()
        (d / "net.prototxt").write_text(TRAIN if phase == "train" else TINY)
    env = {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    cold = _python(CACHED.format(proto=str(first / "net.prototxt"), phase=phase), env)
    warm = _python(CACHED.format(proto=str(second / "net.prototxt"), phase=phase), env)
    graphs = 2 if phase == "train" else 1  # forward and backward
    assert cold["inductor"].get("fxgraph_cache_miss") == graphs, cold
    assert warm["inductor"].get("fxgraph_cache_hit") == graphs, warm
    assert "fxgraph_cache_miss" not in warm["inductor"], warm
    if phase == "test":
        assert warm["aot_autograd"].get("autograd_cache_hit") == 1, warm
