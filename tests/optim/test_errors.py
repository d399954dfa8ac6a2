"""Bad solver files and bad arguments to caffe_fx.optim: clear errors naming the file,
the field and the value (the CHECKs of Caffe's solver constructors and
GetLearningRate, made up front)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from caffe_fx.errors import InputError, OutputExistsError, ProtoError, ProtoUpgradeError
from caffe_fx.optim import (
    SGD,
    AdaGrad,
    CaffeLR,
    SolverState,
    from_solver,
    read_solver,
    read_solverstate,
    write_solverstate,
)
from tests.optim._train import GOLDEN, start

BASE = 'net: "basic.prototxt"\nbase_lr: 0.1\n'


def solver(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad_solver.prototxt"
    path.write_text(BASE + text + ("" if "lr_policy" in text else '\nlr_policy: "fixed"'))
    return path


@pytest.mark.parametrize(("text", "match"), [
    ('type: "Momentum"', (r"bad_solver.prototxt: type = 'Momentum': Unknown solver type; "
                         r"allowed: SGD, Nesterov")),
    ('regularization_type: "L3"', (r"bad_solver.prototxt: regularization_type = 'L3': Unknown "
                                  r"regularization type; allowed: 'L2', 'L1'")),
    ('lr_policy: "cosine"', (r"bad_solver.prototxt: lr_policy = 'cosine': Unknown learning "
                            r"rate policy; allowed: fixed, step, exp, inv, multistep, poly")),
    ('lr_policy: "step" gamma: 0.5', (r"bad_solver.prototxt: lr_policy 'step' needs "
                                     r"stepsize > 0; stepsize = 0")),
    ('lr_policy: "exp" gamma: -0.5', r"lr_policy 'exp' needs gamma >= 0; gamma = -0.5"),
    ('type: "AdaGrad" momentum: 0.9', (r"bad_solver.prototxt: momentum = 0.9.*Momentum cannot "
                                      r"be used with AdaGrad")),
    ('type: "RMSProp" rms_decay: 1.5', (r"bad_solver.prototxt: rms_decay = 1.5; RMSProp needs "
                                       r"0 <= rms_decay < 1")),
    ("iter_size: 0", r"bad_solver.prototxt: iter_size = 0; it must be >= 1"),
])
def test_bad_solver_fields(tmp_path: Path, text: str, match: str) -> None:
    gm, _, _ = start("sgd_fixed_l2")
    with pytest.raises(ProtoError, match=match):
        from_solver(solver(tmp_path, text), gm)


def test_legacy_solver_type(tmp_path: Path) -> None:
    assert read_solver(solver(tmp_path, "solver_type: ADAM")).type == "Adam"
    with pytest.raises(ProtoUpgradeError, match=r"solver_type = NESTEROV, type = 'SGD'"):
        read_solver(solver(tmp_path, 'solver_type: NESTEROV\ntype: "SGD"'))
    assert read_solver(solver(tmp_path, "")).snapshot_prefix == str(tmp_path / "bad_solver")


def test_not_a_compiled_net(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"needs a GraphModule from caffe_fx.compile\(\)"):
        from_solver(solver(tmp_path, ""), torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_optimizer_arguments() -> None:
    p = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ProtoError, match=r"regularization = 'L0'.*allowed: 'L2', 'L1'"):
        SGD([p], lr=0.1, regularization="L0")
    with pytest.raises(ProtoError, match=r"AdaGrad: momentum = 0.5"):
        AdaGrad([p], lr=0.1, momentum=0.5)
    with pytest.raises(InputError, match=r"iter_size = 0"):
        SGD([p], lr=0.1, iter_size=0)
    with pytest.raises(ProtoError, match=r"<solver>: lr_policy 'sigmoid' needs stepsize > 0"):
        CaffeLR(SGD([p], lr=0.1), "sigmoid", base_lr=0.1, gamma=0.1)


def test_load_history_checks_count_and_shapes() -> None:
    _, opt, _ = start("adam_sigmoid_groups")
    good = [h.numpy() for h in opt.history()]
    assert len(good) == 10  # Adam: two per learnable blob; the shared one counts once
    with pytest.raises(InputError, match=r"Incorrect length of history blobs: 9 given, 10 "
                                         r"expected \(2 per learnable param, 5 params\)"):
        opt.load_history(good[:-1])
    bad = list(good)
    bad[3] = np.zeros((2, 2), np.float32)
    with pytest.raises(InputError, match=r"history blob 3 has shape \[2, 2\]; expected \[3\]"):
        opt.load_history(bad)


def test_solverstate_files(tmp_path: Path) -> None:
    state = SolverState(iter=7, current_step=2, learned_net="net_iter_7.caffemodel",
                        history=[np.arange(6, dtype=np.float32).reshape(2, 3),
                                 np.array([-1.5], np.float32)])
    for hdf5 in (False, True):
        path = write_solverstate(tmp_path / f"s{hdf5}.solverstate", state, hdf5=hdf5)
        back = read_solverstate(path)
        assert (back.iter, back.current_step, back.learned_net) == (7, 2, state.learned_net)
        assert [h.tolist() for h in back.history] == [h.tolist() for h in state.history]
        with pytest.raises(OutputExistsError, match=r"already exists; refusing to overwrite"):
            write_solverstate(path, state, hdf5=hdf5)
        write_solverstate(path, state, hdf5=hdf5, force=True)
    (tmp_path / "junk.solverstate").write_bytes(b"\xff\xff\xff")
    with pytest.raises(ProtoError, match=r"junk.solverstate: not a binary SolverState proto"):
        read_solverstate(tmp_path / "junk.solverstate")


def test_caffe_hdf5_solverstate_reads() -> None:
    state = read_solverstate(GOLDEN / "adam_hdf5_l1_iter_12.solverstate.h5")
    assert (state.iter, state.current_step) == (12, 0)
    assert state.learned_net == "adam_hdf5_l1_iter_12.caffemodel.h5"
    assert [h.shape for h in state.history] == [(4, 3, 3, 3), (4,), (3, 36), (3,)] * 2
