"""`caffe-fx train` against real `caffe train` (tests/golden/cli/caffe_train*.txt and
trained*.caffemodel, tools/make_cli_goldens.py): an HDF5Data net, SGD with momentum,
weight decay and a step policy, tests every 4 iterations, fine-tuned from Caffe-filled
weights, iter_size 1 and 2.

The log lines must be Caffe's, line for line, with every number but the timings within
1e-4 relative (six printed digits); the snapshot must hold Caffe's trained weights.
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from caffe_fx.cli import main
from caffe_fx.frontend.read import read_weights

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "cli"
SOURCES = ("hdf5", "train_list.txt", "test_list.txt", "net.prototxt", "solver.prototxt",
           "solver_iter2.prototxt", "init.caffemodel")
NUMBER = re.compile(r"-?\d+(\.\d+)?(e[-+]\d+)?")
TIMING = re.compile(r" \(\S+ iter/s, \S+s/\d+ iters\)")


def workdir(tmp_path: Path) -> Path:
    for name in SOURCES:
        src = GOLDEN / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    (tmp_path / "snap").mkdir()
    return tmp_path


def assert_log_is_caffes(got: list[str], want: list[str]) -> None:
    got = [TIMING.sub("", x) for x in got]
    want = [TIMING.sub("", x) for x in want]
    assert [NUMBER.sub("#", x) for x in got] == [NUMBER.sub("#", x) for x in want]
    for a, b in zip(got, want):
        for x, y in zip(NUMBER.finditer(a), NUMBER.finditer(b)):
            assert float(x[0]) == pytest.approx(float(y[0]), rel=1e-4, abs=1e-6), (a, b)


def assert_weights(path: Path, golden: Path, rel: float) -> None:
    got, want = read_weights(path), read_weights(golden)
    assert sorted(got) == sorted(want)
    for layer, blobs in want.items():
        for a, b in zip(got[layer], blobs):
            scale = float(np.abs(b.array).max())
            np.testing.assert_allclose(a.array, b.array, rtol=0, atol=rel * scale,
                                       err_msg=layer)


@pytest.mark.parametrize("solver,log,trained", [
    ("solver", "caffe_train.txt", "trained.caffemodel"),
    ("solver_iter2", "caffe_train_iter2.txt", "trained_iter2.caffemodel"),
], ids=["iter_size1", "iter_size2"])
def test_log_and_weights_are_caffes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], solver: str,
                                    log: str, trained: str) -> None:
    monkeypatch.chdir(workdir(tmp_path))
    assert main(["train", "-solver", f"{solver}.prototxt", "-weights", "init.caffemodel"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["Use CPU.", "Starting Optimization"]
    assert_log_is_caffes(out[2:], (GOLDEN / log).read_text().splitlines())
    assert_weights(tmp_path / "snap" / f"{solver}_iter_8.caffemodel", GOLDEN / trained, 1e-4)


def test_resume_from_caffes_snapshot_is_caffes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Real Caffe's iteration-4 solverstate resumed: the data readers start over, as in
    Caffe, so the log is that of `caffe train -snapshot`, not of the uninterrupted run."""
    work = workdir(tmp_path)
    shutil.copy(GOLDEN / "solver_snap4.prototxt", work)
    for f in (GOLDEN / "snap").iterdir():
        shutil.copy(f, work / "snap")
    monkeypatch.chdir(work)
    assert main(["train", "--solver=solver_snap4.prototxt",
                 "-snapshot=snap/resume_iter_4.solverstate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:3] == ["Use CPU.", "Resuming from snap/resume_iter_4.solverstate",
                       "Starting Optimization"]
    assert_log_is_caffes(out[3:], (GOLDEN / "caffe_resume.txt").read_text().splitlines())
    assert_weights(work / "snap" / "resume_iter_8.caffemodel",
                   GOLDEN / "trained_resume.caffemodel", 1e-4)


def test_iterations_stops_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(workdir(tmp_path))
    assert main(["train", "-solver", "solver.prototxt", "-weights", "init.caffemodel",
                 "-iterations", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    want = (GOLDEN / "caffe_train.txt").read_text().splitlines()
    # Caffe's first two iterations, then Solve's end: snapshot, last display
    cut = want.index("Iteration 2, lr = 0.1") - 2
    assert_log_is_caffes(out[2:2 + cut], want[:cut])
    assert "Snapshotting to binary proto file snap/solver_iter_2.caffemodel" in out
    assert out[-1] == "Optimization Done."


def test_usage_errors_exit_2_and_net_errors_exit_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(workdir(tmp_path))
    for argv, message in [
        (["-weights", "init.caffemodel", "-snapshot", "x.solverstate"], "but not both"),
        (["--procs", "0"], "--procs 0: must be at least 1"),
        (["-sigint_effect", "explode"], "invalid choice: 'explode'"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["train", "-solver", "solver.prototxt", *argv])
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    assert main(["train", "-solver", "missing_solver.prototxt"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("caffe-fx train: error: ") and "missing_solver.prototxt" in err
    assert main(["train", "-solver", "solver.prototxt", "-gpu", "9"]) == 1
    assert "no CUDA device 9" in capsys.readouterr().err


def test_help_is_fast_and_lists_the_commands() -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "caffe_fx", "--help"],
                          capture_output=True, text=True, check=True)
    for name in ("train", "test", "time"):
        assert name in proc.stdout
    assert "import time:" in proc.stderr and " torch\n" not in proc.stderr


def test_progress_line_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.chdir(workdir(tmp_path))
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["train", "-solver", "solver.prototxt", "-weights", "init.caffemodel",
                 "-iterations", "3"]) == 0
    shown = term.getvalue()
    assert "\r\033[Kiter 0/3  loss 0  lr 0.1  " in shown
    assert re.search(r"\r\033\[Kiter 2/3  loss \S+  lr 0.1  \d+\.\d\d it/s", shown)
    assert shown.endswith("\r\033[K")  # cleared before the last lines
    assert "\r" not in capsys.readouterr().out  # the log itself stays clean


@pytest.mark.parametrize("effect", ["stop", "none"])
def test_sigint_effect(tmp_path: Path, effect: str) -> None:
    """`-sigint_effect stop`: Ctrl-C snapshots and stops, exit 0, as `caffe train`; with
    `none` the signal is ignored and the run reaches -iterations."""
    import os
    import signal
    import subprocess
    import sys

    work = workdir(tmp_path)
    iters = "200000" if effect == "stop" else "60"
    env = dict(os.environ, PYTHONPATH=str(GOLDEN.parents[2]))
    proc = subprocess.Popen([sys.executable, "-m", "caffe_fx", "train", "-solver",
                             "solver.prototxt", "-weights", "init.caffemodel",
                             "-iterations", iters, "-sigint_effect", effect],
                            cwd=work, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        if line.startswith("Iteration 2, lr"):
            proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0
    snaps = sorted(os.listdir(work / "snap"))
    if effect == "stop":
        assert "Optimization stopped early." in lines
        assert len(snaps) == 2 and snaps[0].startswith("solver_iter_")
        assert int(snaps[0].split("_")[-1].split(".")[0]) < 1000
    else:
        assert lines[-1] == "Optimization Done."
        assert snaps == ["solver_iter_60.caffemodel", "solver_iter_60.solverstate"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_solver_mode_gpu_without_cuda_says_how_in_solver_file_terms(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """As tools/caffe.cpp, no -gpu lets the file's `solver_mode: GPU` pick the device; on a
    machine without CUDA that is one line naming the file's fields and the fix, and "Use
    CPU." is not printed first."""
    monkeypatch.chdir(workdir(tmp_path))
    text = Path("solver.prototxt").read_text()
    Path("gpu_solver.prototxt").write_text(text + "\nsolver_mode: GPU\ndevice_id: 0\n")
    assert main(["train", "-solver", "gpu_solver.prototxt"]) == 1
    captured = capsys.readouterr()
    assert "Use CPU." not in captured.out
    assert captured.err == (
        "caffe-fx train: error: gpu_solver.prototxt: solver_mode = GPU, device_id = 0: CUDA is "
        "not available on this machine (no CUDA device or a CPU-only torch build); set "
        "`solver_mode: CPU` in the solver file\n")


def python_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tests/golden/cli/python/ copied, its pydata.py importable (PYTHONPATH, as for
    Caffe's binary), and sys.modules left as it was."""
    work = tmp_path / "python"
    shutil.copytree(GOLDEN / "python", work)
    (work / "snap").mkdir()
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    monkeypatch.delitem(sys.modules, "pydata", raising=False)
    return work


def test_python_layers_train_as_in_caffe_when_trusted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A Python data layer and a Python layer with a backward, trained by
    `caffe train` built WITH_PYTHON_LAYER (tests/golden/cli/python/caffe_train.txt):
    --trust-python-layers runs them, with Caffe's log and trained weights."""
    work = python_workdir(tmp_path, monkeypatch)
    assert main(["train", "-solver", "solver.prototxt", "-weights", "init.caffemodel",
                 "--trust-python-layers"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["Use CPU.", "Starting Optimization"]
    assert_log_is_caffes(out[2:], (GOLDEN / "python" / "caffe_train.txt").read_text()
                         .splitlines())
    assert_weights(work / "snap" / "py_iter_8.caffemodel",
                   GOLDEN / "python" / "trained.caffemodel", 1e-4)


def test_python_layers_are_refused_unless_trusted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    python_workdir(tmp_path, monkeypatch)
    assert main(["train", "-solver", "solver.prototxt"]) == 1
    err = capsys.readouterr().err
    assert ("Python layers 'data' (python_param.module = 'pydata'), 'twice' "
            "(python_param.module = 'pydata') run user code, which caffe-fx runs only when "
            "told: pass --trust-python-layers") in err
    assert "pydata" not in sys.modules
