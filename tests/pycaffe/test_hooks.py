"""Net.before_forward/after_forward/before_backward/after_backward, solver callbacks,
caffe.Timer and solver_count/solver_rank against real pycaffe (tests/golden/pycaffe_misc/
hooks.json, tools/make_pycaffe_misc_goldens.py): hooks run for every layer of the range,
backward ones also where a layer needs no backward, as Net::ForwardFromTo/BackwardFromTo."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import caffe_fx.pycaffe as caffe
from caffe_fx.errors import InputError

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "pycaffe_misc"
HOOKS = json.loads((GOLDEN / "hooks.json").read_text())


def hooked_net() -> tuple[caffe.Net, list[list]]:
    events: list[list] = []
    net = caffe.Net(str(GOLDEN / "tiny.prototxt"), caffe.TRAIN)
    for kind in ("before_forward", "after_forward", "before_backward", "after_backward"):
        getattr(net, kind)(lambda i, k=kind: events.append([k, i]))
    net.blobs["data"].data[...] = np.random.default_rng(0).standard_normal(
        net.blobs["data"].data.shape)
    net.blobs["label"].data[...] = [0, 1, 2, 1]
    return net, events


def test_hooks_run_as_caffes_layer_loops():
    net, events = hooked_net()
    assert list(net._layer_names) == HOOKS["layer_names"]
    for name, run in [("forward", lambda: net.forward()),
                      ("backward", lambda: net.backward()),
                      ("forward_partial", lambda: net.forward(start="relu1", end="ip1")),
                      ("backward_partial", lambda: net.backward(start="ip1", end="relu1"))]:
        events.clear()
        run()
        assert events == HOOKS[name], name


def test_hooks_leave_the_values_as_they_are():
    net, _ = hooked_net()
    plain = caffe.Net(str(GOLDEN / "tiny.prototxt"), caffe.TRAIN)
    for blob in ("data", "label"):
        plain.blobs[blob].data[...] = net.blobs[blob].data
    for name, params in net.params.items():
        for a, b in zip(params, plain.params[name]):
            b.data[...] = a.data
    for n in (net, plain):
        n.forward()
        n.backward()
    for name in net.blobs:
        np.testing.assert_array_equal(net.blobs[name].data, plain.blobs[name].data)
        np.testing.assert_array_equal(net.blobs[name].diff, plain.blobs[name].diff)
    for name, params in net.params.items():
        for a, b in zip(params, plain.params[name]):
            np.testing.assert_array_equal(a.diff, b.diff)


def test_solver_callbacks_and_hooks_in_a_step(monkeypatch):
    monkeypatch.chdir(GOLDEN)
    events: list[list] = []
    solver = caffe.SGDSolver("sgd_solver.prototxt")
    solver.net.before_forward(lambda i: events.append(["before_forward", i]))
    solver.net.after_backward(lambda i: events.append(["after_backward", i]))
    solver.add_callback(lambda: events.append(["on_start"]),
                        lambda: events.append(["on_gradients"]))
    solver.step(2)
    assert events == HOOKS["solver_step_2"]


def test_timer_and_solver_globals():
    timer = caffe.Timer()
    assert timer.ms == 0.0  # never run: Caffe warns and says 0
    timer.start()
    timer.stop()
    assert [type(timer.ms).__name__, timer.ms >= 0] == HOOKS["timer"]
    assert [caffe.solver_count(), caffe.solver_rank()] == HOOKS["solver_count_rank"]
    try:
        caffe.set_solver_count(3)
        caffe.set_solver_rank(2)
        assert [caffe.solver_count(), caffe.solver_rank()] == HOOKS["solver_count_rank_set"]
    finally:
        caffe.set_solver_count(1)
        caffe.set_solver_rank(0)


def test_bad_hooks_and_callbacks_are_refused(monkeypatch):
    net, _ = hooked_net()
    with pytest.raises(InputError, match=r"Net.after_backward\(3\): not callable"):
        net.after_backward(3)
    with pytest.raises(InputError, match="add_callback: on_gradients_ready is a str; it must "
                                         "be callable"):
        monkeypatch.chdir(GOLDEN)
        caffe.SGDSolver("sgd_solver.prototxt").add_callback(None, "x")


def test_the_private_members_pycaffe_py_builds_on():
    net, _ = hooked_net()
    want = HOOKS["private"]
    got = {"blob_names": net._blob_names, "nblobs": len(net._blobs),
           "top_ids": [net._top_ids(i) for i in range(len(net.layers))],
           "bottom_ids": [net._bottom_ids(i) for i in range(len(net.layers))],
           "inputs": net._inputs, "outputs": net._outputs,
           "blob_loss_weights": net._blob_loss_weights}
    assert got == {k: want[k] for k in got}
    assert net._blobs[net._blob_names.index("ip1")] is net.blobs["ip1"]
    loss = net._forward(0, len(net.layers) - 1)
    assert [type(loss).__name__, abs(loss - float(net.blobs["loss"].data)) < 1e-6] == \
        want["forward_returns"]
    assert net._forward(1, 2) == want["forward_partial_returns"]
    assert repr(net._backward(len(net.layers) - 1, 0)) == want["backward_returns"]
    with pytest.raises(InputError, match=r"Net._forward\(9\): not a layer index; allowed: 0 "
                                         r"to 4"):
        net._forward(9, 9)
