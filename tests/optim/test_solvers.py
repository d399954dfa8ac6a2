"""caffe_fx.optim against real Caffe's training runs (tests/golden/solvers, made by
tools/make_solver_goldens.py with caffe-oracle solve): per-iteration loss and lr, final
params and the history blobs of Caffe's solverstate, for every solver type and lr policy;
and resuming across the two implementations in both directions."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from caffe_fx.optim import SolverState, read_solverstate, write_solverstate
from tests.optim._train import GOLDEN, params_of, run, start

CASES = sorted(p.name.split(".")[0] for p in GOLDEN.glob("*.solver.prototxt"))
RESUME = sorted(p.name.split("_resumed")[0] for p in GOLDEN.glob("*_resumed.npz"))
INPUTS = dict(np.load(GOLDEN / "inputs.npz"))


def close(got: np.ndarray, want: np.ndarray, tol: float, what: str) -> None:
    scale = max(float(np.abs(want).max()), 1e-30)
    err = float(np.abs(np.asarray(got, np.float64) - want).max()) / scale
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol}"


def state_file(case: str, it: int, who: str = "") -> Path:
    """Caffe's (or with who="_ours", our) solverstate; HDF5 for the HDF5 case."""
    h5 = GOLDEN / f"{case}{who}_iter_{it}.solverstate.h5"
    return h5 if h5.exists() else GOLDEN / f"{case}{who}_iter_{it}.solverstate"


def model_file(case: str, it: int) -> Path:
    h5 = GOLDEN / f"{case}_iter_{it}.caffemodel.h5"
    return h5 if h5.exists() else GOLDEN / f"{case}_iter_{it}.caffemodel"


def check_against(case: str, gm: torch.fx.GraphModule, opt, it: int) -> None:
    want = np.load(GOLDEN / f"{case}.npz") if it == 12 else None
    if want is not None:
        got = params_of(gm)
        assert sorted(got) == sorted(k for k in want.files if k.startswith("param/"))
        for key, value in got.items():
            close(value, want[key], 1e-4, f"{case} {key}")
    state = read_solverstate(state_file(case, it))
    assert state.iter == opt.iteration == it
    history = opt.history()
    assert len(history) == len(state.history)
    for i, (h, c) in enumerate(zip(history, state.history)):
        assert tuple(h.shape) == c.shape
        close(h.numpy(), c, 1e-4, f"{case} history {i}")


@pytest.mark.parametrize("case", CASES)
def test_twelve_iterations_match_caffe(case: str) -> None:
    gm, opt, sched = start(case)
    want = np.load(GOLDEN / f"{case}.npz")
    losses, lrs = run(gm, opt, sched, INPUTS, 0, 6)
    check_against(case, gm, opt, 6)
    more = run(gm, opt, sched, INPUTS, 6, 12)
    losses, lrs = losses + more[0], lrs + more[1]
    np.testing.assert_allclose(lrs, want["lr"], rtol=1e-6)
    close(np.array(losses), want["loss"], 1e-4, f"{case} loss")
    check_against(case, gm, opt, 12)


def test_clip_really_clips() -> None:
    gm, opt, _ = start("sgd_clip")
    k = 0
    gm(**{b: torch.from_numpy(INPUTS[f"{b}@{k}"]) for b in ("data", "label")})["loss"].backward()
    norm = float(torch.sqrt(sum((p.grad ** 2).sum() for p in opt.param_order)))
    assert norm > 3 * opt.clip_gradients


def test_groups_follow_param_specs() -> None:
    """lr_mult 0 / lr_mult 2 decay_mult 0 / the shared 'ws' (owner ipa, decay_mult 2) /
    decay_mult 2: one group per pair, Caffe's learnable order kept, 'ws' once."""
    gm, opt, _ = start("sgd_step_groups")
    groups = {(g["lr_mult"], g["decay_mult"]): g["params"] for g in opt.param_groups}
    assert sorted(groups) == [(0.0, 1.0), (1.0, 1.0), (1.0, 2.0), (2.0, 0.0)]
    names = {id(p): n for n, p in gm.named_parameters()}
    assert [names[id(p)] for p in opt.param_order] == \
        ["conv1.weight", "conv1.bias", "ipa.weight", "ipa.bias", "ipb.bias"]
    assert [names[id(p)] for p in groups[(1.0, 2.0)]] == ["ipa.weight", "ipb.bias"]


@pytest.mark.parametrize("case", RESUME)
def test_we_resume_from_caffe_solverstate(case: str) -> None:
    gm, opt, sched = start(case, weights=model_file(case, 6))
    state = read_solverstate(state_file(case, 6))
    opt.load_history(state.history)
    opt.iteration = state.iter
    sched.restore(state.iter, state.current_step)
    run(gm, opt, sched, INPUTS, 6, 12)
    check_against(case, gm, opt, 12)


@pytest.mark.parametrize("case", RESUME)
def test_caffe_resumes_from_our_solverstate(case: str, tmp_path) -> None:
    """The generator gave real Caffe our iteration-6 solverstate; Caffe's 6 further
    iterations from it end where its uninterrupted run ends.  What we write now is
    still that file."""
    resumed, whole = np.load(GOLDEN / f"{case}_resumed.npz"), np.load(GOLDEN / f"{case}.npz")
    for key in resumed.files:
        close(resumed[key], whole[key], 1e-4, f"{case} {key}")
    gm, opt, sched = start(case)
    run(gm, opt, sched, INPUTS, 0, 6)
    given_path = state_file(case, 6, "_ours")
    given = read_solverstate(given_path)
    path = write_solverstate(tmp_path / given_path.name, SolverState(
        iter=opt.iteration, current_step=sched.current_step, learned_net=given.learned_net,
        history=[h.numpy() for h in opt.history()]), hdf5=given_path.suffix == ".h5")
    ours = read_solverstate(path)
    assert (ours.iter, ours.current_step, ours.learned_net) == \
        (given.iter, given.current_step, given.learned_net)
    # After 6 iterations, as the whole-run comparison above: float32 kernels of another
    # CPU move AdaDelta's history by 1.01e-5 of its largest value.
    for a, b in zip(ours.history, given.history, strict=True):
        close(a, b, 1e-4, f"{case} history")


def test_batchnorm_statistics_are_learnable_blobs_of_lr_mult_0() -> None:
    """Caffe keeps BatchNorm's mean/variance/factor in learnable_params_ (lr_mult 0):
    they have AdaGrad history (from weight decay), so from_solver must keep them."""
    gm, opt, _ = start("adagrad_batchnorm")
    names = {id(t): n for n, t in [*gm.named_parameters(), *gm.named_buffers()]}
    order = [names[id(p)] for p in opt.param_order]
    assert order == ["conv1.weight", "bn1.mean", "bn1.variance", "bn1.scale_factor",
                     "scale1.weight", "scale1.bias", "ip1.weight", "ip1.bias"]
    caffe = read_solverstate(state_file("adagrad_batchnorm", 12)).history
    assert all(np.abs(caffe[i]).max() > 0 for i in (1, 2, 3))
    assert {(g["lr_mult"], len(g["params"])) for g in opt.param_groups} == {(0.0, 3), (1.0, 5)}


class _FusedSpy:
    """torch._fused_sgd_, recording the params each call updates."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.updated: list[torch.Tensor] = []
        real = torch._fused_sgd_

        def spy(params, *args, **kwargs):
            self.updated.extend(params)
            return real(params, *args, **kwargs)

        monkeypatch.setattr(torch, "_fused_sgd_", spy)

    def names(self, gm: torch.fx.GraphModule) -> set[str]:
        ids = {id(p) for p in self.updated}
        return {n for n, p in gm.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("case, fused", [
    ("sgd_step_groups", True), ("sgd_iter_size2", True), ("sgd_clip", True),
    ("sgd_step_l1_groups", False), ("sgd_no_momentum", False), ("nesterov_exp_l1", False)])
def test_sgd_runs_fused_only_where_that_is_caffes_update(case: str, fused: bool,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """SGD's one-pass update (torch's fused kernel) takes every param of an L2 run with
    momentum (lr_mult 0 ones too: Caffe regularizes them into a zero update), and none of an L1 run, one without momentum or another solver; each run's
    twelve iterations match Caffe's in test_twelve_iterations_match_caffe."""
    spy = _FusedSpy(monkeypatch)
    gm, opt, sched = start(case)
    run(gm, opt, sched, INPUTS, 0, 2)
    assert spy.names(gm) == ({n for n, _ in gm.named_parameters()} if fused else set())


def test_a_non_contiguous_param_takes_the_param_by_param_update(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused kernel walks memory in order, so a channels-last weight (its grad too)
    is updated on its own, beside the fused rest of its group, and the run still ends
    where Caffe's does."""
    spy = _FusedSpy(monkeypatch)
    gm, opt, sched = start("sgd_step_groups")
    w = gm.get_parameter("conv1.weight")
    w.data = w.data.contiguous(memory_format=torch.channels_last)
    assert not w.is_contiguous()
    run(gm, opt, sched, INPUTS, 0, 12)
    assert spy.names(gm) == {"conv1.bias", "ipa.weight", "ipa.bias", "ipb.bias"}
    check_against("sgd_step_groups", gm, opt, 12)


def test_the_fused_update_bumps_the_version_counters() -> None:
    """torch's fused kernel writes through data pointers; the update marks the params
    changed, so caches keyed on (data_ptr, _version) - onednn's prepacked weights, which
    a no-grad forward uses - see the new weights."""
    gm, opt, sched = start("sgd_fixed_l2")
    feed = {b: torch.from_numpy(INPUTS[f"{b}@0"]) for b in ("data", "label")}
    with torch.no_grad():
        gm(**feed)  # fills any weight cache
    before = {n: p._version for n, p in gm.named_parameters()}
    run(gm, opt, sched, INPUTS, 0, 1)
    assert all(p._version > before[n] for n, p in gm.named_parameters())
    fresh = start("sgd_fixed_l2")[0]
    fresh.load_state_dict(gm.state_dict())
    with torch.no_grad():
        got, want = gm(**feed), fresh(**feed)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)
