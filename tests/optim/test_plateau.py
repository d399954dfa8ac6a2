"""The SSD fork's "plateau" lr_policy (weiliu89/caffe, SGDSolver::GetLearningRate) against
the fork's own solver runs (tests/golden/plateau, made by tools/make_plateau_goldens.py):
the rate and the plateau step of every iteration, the smoothed loss (average_loss,
iter_size, a Step restart), the final weights, and the fork's solverstate both ways."""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import ProtoError
from caffe_fx.optim import (
    SGD,
    CaffeLR,
    SolverState,
    read_solver,
    read_solverstate,
    write_solverstate,
)

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "plateau"
CASES = sorted(p.name.split(".")[0] for p in GOLDEN.glob("*.solver.prototxt"))
INPUTS = dict(np.load(GOLDEN / "inputs.npz"))
FEEDS = sorted({int(k.split("@")[1]) for k in INPUTS})
RESUME_AT = 15


def close(got: np.ndarray, want: np.ndarray, tol: float, what: str) -> None:
    scale = max(float(np.abs(want).max()), 1e-30)
    err = float(np.abs(np.asarray(got, np.float64) - want).max()) / scale
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol}"


def feed(it: int) -> dict[str, np.ndarray]:
    k = FEEDS[it % len(FEEDS)]  # as the generator's on_start: batch iter % K
    return {b: INPUTS[f"{b}@{k}"] for b in ("data", "label")}


def make_solver(case: str, tmp_path: Path, **kw) -> caffe_fx.Solver:
    param = read_solver(GOLDEN / f"{case}.solver.prototxt")
    param.net = str(GOLDEN / "net.prototxt")
    param.snapshot_prefix = str(tmp_path / case)
    return caffe_fx.Solver(param, inputs=feed, **kw)


class Recorder:
    """Per iteration: the rate the update applied, the plateau step after it, and the
    smoothed loss it saw."""

    def __init__(self, solver: caffe_fx.Solver) -> None:
        self.lr: list[float] = []
        self.step: list[int] = []
        self.smoothed: list[float] = []

        def before_step(opt, _args, _kwargs) -> None:
            self.lr.append(opt.param_groups[0]["lr"])
            self.step.append(solver.scheduler.step_now)

        solver.optimizer.register_step_pre_hook(before_step)
        solver.add_callback(None, lambda: self.smoothed.append(solver.smoothed_loss))


def params(solver: caffe_fx.Solver) -> dict[str, np.ndarray]:
    gm = solver.net
    return {f"param/{spec.layer}/{spec.blob_index}": gm.get_parameter(name).detach().numpy()
            for name, spec in gm.meta["caffe"].param_specs.items()}


@pytest.mark.parametrize("case", CASES)
def test_solver_follows_the_fork(case: str, tmp_path: Path) -> None:
    want = np.load(GOLDEN / f"{case}.npz")
    solver = make_solver(case, tmp_path, weights=GOLDEN / "w0.caffemodel")
    seen = Recorder(solver)
    for n in want["segments"]:
        solver.step(int(n))
    np.testing.assert_array_equal(seen.step, want["step"])
    np.testing.assert_allclose(seen.lr, want["lr"], rtol=1e-5)  # the fork logs 6 digits
    assert want["step"][-1] >= 2  # the rate really dropped, twice or more
    close(np.array(seen.smoothed), want["smoothed"], 1e-4, f"{case} smoothed loss")
    got = params(solver)
    assert sorted(got) == sorted(k for k in want.files if k.startswith("param/"))
    for key, value in got.items():
        close(value, want[key], 1e-4, f"{case} {key}")


@pytest.mark.parametrize("case", CASES)
def test_scheduler_alone_gives_the_forks_rates(case: str) -> None:
    """CaffeLR fed the fork's smoothed losses gives its rate and step at every iteration."""
    want = np.load(GOLDEN / f"{case}.npz")
    param = read_solver(GOLDEN / f"{case}.solver.prototxt")
    opt = SGD([torch.nn.Parameter(torch.zeros(1))], lr=param.base_lr)
    sched = CaffeLR(opt, "plateau", base_lr=param.base_lr, gamma=param.gamma,
                    plateau_winsize=list(param.plateau_winsize))
    rates, steps = [], []
    for loss in want["smoothed"]:
        rates.append(sched.observe_loss(float(loss)))
        steps.append(sched.step_now)
        assert opt.param_groups[0]["lr"] == rates[-1]
        opt.step()
        sched.step()
    np.testing.assert_array_equal(steps, want["step"])
    np.testing.assert_allclose(rates, want["lr"], rtol=1e-5)


def test_resumes_from_the_forks_solverstate(tmp_path: Path, monkeypatch) -> None:
    """The fork's iteration-15 snapshot (minimum_loss, iter_last_event, current_step)
    restored, then 15 more iterations (average_loss 1: the Step restart changes nothing)."""
    case = "sgd_window"
    want = np.load(GOLDEN / f"{case}.npz")
    state = read_solverstate(GOLDEN / f"{case}_iter_{RESUME_AT}.solverstate")
    assert state.iter == RESUME_AT and state.current_step == want["step"][RESUME_AT - 1]
    assert state.minimum_loss is not None and state.iter_last_event is not None
    assert state.minimum_loss == pytest.approx(float(want["smoothed"][:RESUME_AT].min()), rel=1e-5)
    monkeypatch.chdir(GOLDEN)  # learned_net is relative, as the fork wrote it
    solver = make_solver(case, tmp_path, snapshot=f"{case}_iter_{RESUME_AT}.solverstate")
    assert solver.scheduler.minimum_loss == state.minimum_loss
    assert solver.scheduler.iter_last_event == state.iter_last_event
    seen = Recorder(solver)
    solver.step(len(want["lr"]) - RESUME_AT)
    np.testing.assert_array_equal(seen.step, want["step"][RESUME_AT:])
    np.testing.assert_allclose(seen.lr, want["lr"][RESUME_AT:], rtol=1e-5)
    for key, value in params(solver).items():
        close(value, want[key], 1e-4, f"resumed {key}")


def test_snapshot_holds_the_forks_plateau_state(tmp_path: Path) -> None:
    case = "sgd_window"
    fork = read_solverstate(GOLDEN / f"{case}_iter_{RESUME_AT}.solverstate")
    solver = make_solver(case, tmp_path, weights=GOLDEN / "w0.caffemodel")
    solver.step(RESUME_AT)  # the solver file snapshots at 15
    ours = read_solverstate(tmp_path / f"{case}_iter_{RESUME_AT}.solverstate")
    assert (ours.iter, ours.current_step, ours.iter_last_event) == (
        fork.iter, fork.current_step, fork.iter_last_event)
    assert ours.minimum_loss == pytest.approx(fork.minimum_loss, rel=1e-4)
    for i, (a, b) in enumerate(zip(ours.history, fork.history, strict=True)):
        close(a, b, 1e-4, f"history {i}")


def test_the_log_shows_the_drops(tmp_path: Path, caplog) -> None:
    want = np.load(GOLDEN / "sgd_window.npz")
    solver = make_solver("sgd_window", tmp_path, weights=GOLDEN / "w0.caffemodel")
    with caplog.at_level(logging.INFO, logger="caffe_fx.solver"):
        solver.step(12)
    drops = [int(m.group(1)) for m in re.finditer(r"Plateau Status: Iteration (\d+), step = \d+",
                                                   caplog.text)]
    assert drops == [it for it in range(12) if want["step"][it] > (want["step"][it - 1]
                                                                  if it else 0)]


@pytest.mark.parametrize("hdf5", [False, True], ids=["binary", "hdf5"])
def test_state_files_keep_the_plateau_fields(tmp_path: Path, hdf5: bool) -> None:
    path = tmp_path / ("s.solverstate.h5" if hdf5 else "s.solverstate")
    write_solverstate(path, SolverState(iter=9, current_step=2, learned_net="m.caffemodel",
                                        minimum_loss=0.625, iter_last_event=7), hdf5=hdf5)
    back = read_solverstate(path)
    assert (back.minimum_loss, back.iter_last_event, back.current_step) == (0.625, 7, 2)
    plain = tmp_path / ("p.solverstate.h5" if hdf5 else "p.solverstate")
    write_solverstate(plain, SolverState(iter=9, current_step=2, learned_net="m"), hdf5=hdf5)
    assert (read_solverstate(plain).minimum_loss, read_solverstate(plain).iter_last_event) == (
        None, None)  # BVLC's layout: nothing added


@pytest.mark.parametrize(("winsize", "match"), [
    ((), r"lr_policy 'plateau' needs at least one plateau_winsize .*none given"),
    ((3, 0), r"lr_policy 'plateau' needs every plateau_winsize > 0; plateau_winsize\[1\] = 0"),
    ((-2,), r"lr_policy 'plateau' needs every plateau_winsize > 0; plateau_winsize\[0\] = -2"),
])
def test_bad_windows(tmp_path: Path, winsize: tuple[int, ...], match: str) -> None:
    text = (GOLDEN / "sgd_window.solver.prototxt").read_text()
    text = re.sub(r"plateau_winsize: \d+\n", "", text).replace(
        'net: "net.prototxt"', f'net: "{GOLDEN / "net.prototxt"}"')
    text += "".join(f"plateau_winsize: {w}\n" for w in winsize)
    path = tmp_path / "bad_solver.prototxt"
    path.write_text(text)
    with pytest.raises(ProtoError, match=r"bad_solver.prototxt: " + match):
        caffe_fx.Solver(path, inputs=feed)
    opt = SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ProtoError, match=r"<solver>: " + match):
        CaffeLR(opt, "plateau", base_lr=0.1, gamma=0.5, plateau_winsize=list(winsize))
