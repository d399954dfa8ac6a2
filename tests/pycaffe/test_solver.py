"""caffe_fx.pycaffe solvers against real pycaffe (tests/golden/pycaffe_misc/solvers.json,
tools/make_pycaffe_misc_goldens.py): classes, nets, params, lr; training is not here."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import caffe_fx.pycaffe as caffe
from caffe_fx.errors import NetDefinitionError, ProtoUpgradeError, PycaffeNotImplementedError

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


def test_training_is_not_here(in_golden: None) -> None:
    s = caffe.get_solver("sgd_solver.prototxt")
    for call in (lambda: s.step(1), s.solve, lambda: s.restore("x.solverstate"), s.snapshot):
        with pytest.raises(PycaffeNotImplementedError, match="training .* separate issue"):
            call()


def test_share_weights(in_golden: None) -> None:
    s = caffe.get_solver("sgd_solver.prototxt")
    other = caffe.Net("tiny.prototxt", caffe.TEST)
    s.share_weights(other)
    s.net.params["conv1"][0].data[...] = 3.0
    assert (other.params["conv1"][0].data == 3.0).all()


def test_step_lr_and_upgrade(in_golden: None) -> None:
    s = caffe.get_solver("sgd_solver.prototxt")
    s.iter = 7  # step: base_lr * gamma ^ floor(7 / 3)
    assert s.lr == pytest.approx(0.05 * 0.25, rel=1e-6)
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
