"""Test nets (test_interval, test_iter, shared weights), snapshots at an interval, and
restoring, against real pycaffe's run (tests/golden/training/run_<fmt>.*, Caffe's own
log lines and snapshot files); the live check that real Caffe continues from OUR
snapshot exactly is marked oracle."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.training._common import (
    GOLDEN,
    ROOT_TOOLS,
    close,
    facade_params,
    logged_tests,
    make_facade,
    make_solver,
    run_facade,
    run_solver,
    solver_log,
    solver_params,
)

FORMATS = {"binary": (".caffemodel", ".solverstate"),
           "hdf5": (".caffemodel.h5", ".solverstate.h5")}


def golden(fmt: str) -> tuple[dict, dict]:
    return dict(np.load(GOLDEN / f"run_{fmt}.npz")), json.loads(
        (GOLDEN / f"run_{fmt}.json").read_text())


def compare_tests(got: list[dict], want: list[dict]) -> None:
    assert [(t["iter"], t["net"], [n for n, _ in t["outputs"]]) for t in got] == \
        [(t["iter"], t["net"], [n for n, _ in t["outputs"]]) for t in want]
    for g, w in zip(got, want):
        for (name, a), (_, b) in zip(g["outputs"], w["outputs"]):
            close(a, b, 1e-4, f"iteration {w['iter']}: {name}")  # Caffe logs 6 digits


def snapshots(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder.parent)) for p in folder.iterdir())


@pytest.mark.parametrize("api", ["solver", "pycaffe"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_run_with_tests_and_snapshots(fmt: str, api: str, work: Path) -> None:
    want, record = golden(fmt)
    for p in (work / f"snap_{fmt}").iterdir():
        p.unlink()  # Caffe's own snapshot, copied for the restore tests
    with solver_log() as lines:
        if api == "solver":
            s = make_solver(f"run_{fmt}_solver.prototxt", weights="init.caffemodel")
            losses, _ = run_solver(s, 12)
            params = solver_params(s)
        else:
            f = make_facade(f"run_{fmt}_solver.prototxt")
            losses, _ = run_facade(f, 12)
            params = facade_params(f)
    compare_tests(logged_tests(lines), record["tests"])
    close(losses, want["loss"], 1e-4, "loss")
    for k in (k for k in want if k.startswith("param/")):
        close(params[k], want[k], 1e-4, k)
    assert snapshots(work / f"snap_{fmt}") == record["snapshots"]
    model, state = FORMATS[fmt]
    assert f"Snapshotting to {'HDF5' if fmt == 'hdf5' else 'binary proto'} file " \
        f"snap_{fmt}/tiny_iter_5{model}" in lines
    from caffe_fx.optim import read_solverstate

    ours = read_solverstate(work / f"snap_{fmt}" / f"tiny_iter_5{state}")
    caffes = read_solverstate(GOLDEN / f"snap_{fmt}" / f"tiny_iter_5{state}")
    assert (ours.iter, ours.current_step, ours.learned_net) == \
        (caffes.iter, caffes.current_step, caffes.learned_net)
    assert len(ours.history) == len(caffes.history)
    for i, (a, b) in enumerate(zip(ours.history, caffes.history)):
        close(a, b, 1e-4, f"history {i}")


@pytest.mark.parametrize("api", ["solver", "pycaffe"])
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_restore_caffes_snapshot_continues_exactly(fmt: str, api: str, work: Path) -> None:
    want, record = golden(fmt)
    state = f"snap_{fmt}/tiny_iter_5{FORMATS[fmt][1]}"
    with solver_log() as lines:
        if api == "solver":
            s = make_solver(f"run_{fmt}_solver.prototxt")
            s.restore(state)
            assert s.iter == 5
            losses, lrs = run_solver(s, 12)
            params = solver_params(s)
        else:
            f = make_facade(f"run_{fmt}_solver.prototxt", weights=None)
            f.restore(state)
            assert f.iter == 5
            losses, lrs = run_facade(f, 12)
            params = facade_params(f)
    close(losses, want["loss"][5:], 1e-4, "loss")
    close(lrs, want["lr"][5:], 1e-6, "lr")
    for k in (k for k in want if k.startswith("param/")):
        close(params[k], want[k], 1e-4, k)
    compare_tests(logged_tests(lines), [t for t in record["tests"] if t["iter"] >= 5])


@pytest.mark.parametrize("how", ["solve", "constructor"])
def test_resume_from_caffes_snapshot(how: str, work: Path) -> None:
    want, _ = golden("binary")
    state = "snap_binary/tiny_iter_5.solverstate"
    if how == "solve":
        s = make_solver("run_binary_solver.prototxt")
        s.solve(resume=state)  # Solve(resume_file): restore, then step to max_iter
    else:
        s = make_solver("run_binary_solver.prototxt", snapshot=state)  # caffe train -snapshot
        assert s.iter == 5
        s.step(7)
    assert s.iter == 12
    for k in (k for k in want if k.startswith("param/")):
        close(solver_params(s)[k], want[k], 1e-4, k)


def test_solve_snapshots_at_the_end_and_tests_last(work: Path) -> None:
    s = make_solver("run_binary_solver.prototxt", weights="init.caffemodel")
    with solver_log() as lines:
        s.solve()
    assert s.iter == 12
    names = {p.name for p in (work / "snap_binary").iterdir()}
    assert {"tiny_iter_10.caffemodel", "tiny_iter_12.caffemodel",
            "tiny_iter_12.solverstate"} <= names  # Solve's snapshot_after_train
    assert lines[-1] == "Optimization Done."
    assert "Iteration 12, Testing net (#0)" in lines  # 12 % test_interval == 0
    assert any(line.startswith("Iteration 12, loss = ") for line in lines)


@pytest.mark.oracle
@pytest.mark.slow
@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_caffe_continues_from_our_snapshot(fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(ROOT_TOOLS.parent))
    from tools._chroot import chroot_workdir
    from tools.make_training_goldens import run_script, write_common

    want, _ = golden(fmt)
    root = Path(os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))
    with chroot_workdir(root, "training_test_") as (work, inside):
        write_common(work)
        for name in ("init.caffemodel", f"run_{fmt}_solver.prototxt"):
            (work / name).write_bytes((GOLDEN / name).read_bytes())
        (work / f"snap_{fmt}").mkdir()
        monkeypatch.chdir(work)
        s = make_solver(f"run_{fmt}_solver.prototxt", weights="init.caffemodel")
        run_solver(s, 5)  # snapshot: 5
        state = f"snap_{fmt}/tiny_iter_5{FORMATS[fmt][1]}"
        assert (work / state).is_file()
        run_script(root, inside, [f"run_{fmt}_solver.prototxt", "12", "resumed", state])
        got = dict(np.load(work / "resumed.npz"))
    close(got["loss"], want["loss"][5:], 1e-4, "loss")
    for k in (k for k in want if k.startswith("param/")):
        close(got[k], want[k], 1e-4, k)
