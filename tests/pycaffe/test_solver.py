"""caffe_fx.pycaffe solvers against real pycaffe (tests/golden/pycaffe_misc/solvers.json,
tools/make_pycaffe_misc_goldens.py): classes, nets, params, lr.  Training against real
Caffe is in tests/training/."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import caffe_fx.pycaffe as caffe
from caffe_fx.errors import InputError, NetDefinitionError, ProtoUpgradeError

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pycaffe_misc"
SOLVERS = json.loads((GOLDEN / "solvers.json").read_text())
MAKERS = {
    "nesterov": lambda: caffe.get_solver("nesterov_solver.prototxt"),
    "adam": lambda: caffe.get_solver("adam_solver.prototxt"),
    "sgd": lambda: caffe.get_solver("sgd_solver.prototxt"),
    "adagrad_class": lambda: caffe.AdaGradSolver("adam_solver.prototxt"),
}
LENET = Path(__file__).resolve().parents[3] / "shared" / "models" / "BVLC+caffe" / "examples" \
    / "mnist" / "lenet_solver.prototxt"


@pytest.fixture()
def in_golden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GOLDEN)  # Caffe opens the solver's net paths relative to the CWD


def describe(net: caffe.Net) -> dict:
    return {"blobs": [[k, list(v.data.shape)] for k, v in net.blobs.items()],
            "params": [[k, [list(b.data.shape) for b in v]] for k, v in net.params.items()],
            "layers": list(net._layer_names), "inputs": list(net.inputs),
            "outputs": list(net.outputs)}


@pytest.mark.parametrize("case", sorted(SOLVERS))
def test_solver_matches_pycaffe(case: str, in_golden: None) -> None:
    want = SOLVERS[case]
    s = MAKERS[case]()
    assert type(s).__name__ == want["class"]
    classes = [c for c in want["mro"] if c != "instance"]  # Boost.Python's base class
    assert [c.__name__ for c in type(s).__mro__][:len(classes)] == classes
    assert set(want["dir"]) <= {d for d in dir(s) if not d.startswith("__")}
    assert s.iter == want["iter"]
    assert s.lr == want["lr"]
    for key, value in want["param"].items():
        assert getattr(s.param, key) == value
    assert describe(s.net) == want["net"]
    assert [describe(t) for t in s.test_nets] == want["test_nets"]


def test_iter_is_read_only_and_callbacks_run_around_the_passes(in_golden: None) -> None:
    s = caffe.get_solver("sgd_solver.prototxt")
    with pytest.raises(AttributeError):
        s.iter = 7  # type: ignore[misc]  # pycaffe: a read-only property
    seen: list[tuple[str, int, float]] = []
    weight = s.net.params["conv1"][0]
    s.add_callback(lambda: seen.append(("start", s.iter, float(abs(weight.diff).sum()))),
                   lambda: seen.append(("gradients", s.iter, float(abs(weight.diff).sum()))))
    s.net.blobs["data"].data[...] = 1.0
    # On a constant input each channel of conv1 is one number; with both below ReLU's 0
    # (xavier's draw, 1 in 4) nothing would reach conv1's diff.
    weight.data[...] = np.abs(weight.data)
    s.step(2)
    assert [(w, i) for w, i, _ in seen] == [("start", 0), ("gradients", 0), ("start", 1),
                                            ("gradients", 1)]
    assert seen[0][2] == 0 and seen[1][2] > 0  # ClearParamDiffs, then the backward's diffs
    with pytest.raises(InputError, match="step\\(-1\\)"):
        s.step(-1)


def test_apply_update_does_not_move_iter(in_golden: None) -> None:
    s = caffe.get_solver("sgd_solver.prototxt")
    weight = s.net.params["conv1"][0]
    before = weight.data.copy()
    weight.diff[...] = 1.0
    s.apply_update()  # SGD, no momentum or decay: data -= lr * diff
    assert s.iter == 0
    np.testing.assert_allclose(weight.data, before - np.float32(s.lr), rtol=0, atol=1e-7)


def test_share_weights(in_golden: None) -> None:
    s = caffe.get_solver("sgd_solver.prototxt")
    other = caffe.Net("tiny.prototxt", caffe.TEST)
    s.share_weights(other)
    s.net.params["conv1"][0].data[...] = 3.0
    assert (other.params["conv1"][0].data == 3.0).all()


def test_upgrade_conflict(in_golden: None) -> None:
    with pytest.raises(ProtoUpgradeError, match="solver_type .* cannot be both specified"):
        caffe.get_solver("bad_solver.prototxt")


def test_snapshot_prefix_defaults_to_solver_path(in_golden: None) -> None:
    assert caffe.get_solver("sgd_solver.prototxt")._param.snapshot_prefix == "sgd_solver"


def test_missing_train_net(tmp_path: Path) -> None:
    (tmp_path / "s.prototxt").write_text('base_lr: 0.1\nlr_policy: "fixed"\n')
    with pytest.raises(NetDefinitionError, match="exactly one train net.*given: none"):
        caffe.get_solver(tmp_path / "s.prototxt")


@pytest.mark.skipif(not LENET.exists(), reason=f"{LENET} absent (../shared models)")
def test_lenet_solver_data_layers_need_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    # lenet_train_test reads LMDB through Data layers, which caffe_fx does not read.
    monkeypatch.chdir(LENET.parents[2])
    with pytest.raises(Exception, match="layer 'mnist' \\(Data\\) reads its data from files"):
        caffe.get_solver(os.path.relpath(LENET))
