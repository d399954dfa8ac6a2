"""Bad solver files fail at construction, before the first iteration, with one error
naming the file and the field (caffe_fx.Solver and the pycaffe solvers alike)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import caffe_fx
import caffe_fx.pycaffe as caffe
from caffe_fx.errors import (
    DataSourceError,
    DeviceError,
    InputError,
    NetDefinitionError,
    ProtoError,
    ShapeError,
)
from tests.training._common import batches

BASE = 'base_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 5\n'
NET = 'net: "tiny.prototxt"\n'
CASES = {
    "unknown_type": (NET + 'type: "Momentum"\n', ProtoError,
                     r"type = 'Momentum': Unknown solver type; allowed: SGD, Nest"),
    "no_net": ("", NetDefinitionError, r"exactly one train net .*given: none"),
    "two_train_nets": (NET + 'train_net: "tiny.prototxt"\n', NetDefinitionError,
                       r"exactly one train net .*given: \['train_net', 'net'\]"),
    "test_iter_count": (('train_net: "tiny.prototxt"\ntest_net: "tiny.prototxt"\n'
                         'test_net: "tiny.prototxt"\ntest_iter: 1\ntest_interval: 2\n'),
                        NetDefinitionError, (r"test_iter must be specified for each test "
                                             r"network: 2 test nets, 1 test_iter values")),
    "test_interval": (NET + 'test_iter: 1\n', NetDefinitionError,
                      r"test_interval = 0; it must be > 0"),
    "snapshot_folder": (NET + 'snapshot: 2\nsnapshot_prefix: "nowhere/tiny"\n', ProtoError,
                        r"snapshot_prefix = 'nowhere/tiny': the folder 'nowhere' does not exist"),
    "average_loss": (NET + 'average_loss: 0\n', ProtoError, r"average_loss = 0; it must be >= 1"),
    "iter_size": (NET + 'iter_size: 0\n', ProtoError, r"iter_size = 0; it must be >= 1"),
    "display": (NET + 'display: -1\n', ProtoError, r"display = -1; it must be >= 0"),
    "missing_net": ('net: "nets/lenet.prototxt"\n', ProtoError,
                    r"net = 'nets/lenet.prototxt': no such prototxt file; relative paths are "
                    r"read from the current folder, .*, as Caffe reads them"),
    "data_source": ('net: "hdf5.prototxt"\n', DataSourceError,
                    r"layer 'data' \(HDF5Data\).*missing_list\.txt"),
    "data_shape": ('net: "crop.prototxt"\n', ShapeError,
                   (r"layer 'mnist' \(Data\): transform_param.crop_size = 40 is larger than "
                    r"the first record of the LMDB at data_param.source = 'lenet/train_lmdb'")),
}
CROP_NET = """name: "crop"
layer { name: "mnist" type: "Data" top: "data" top: "label"
  transform_param { crop_size: 40 }
  data_param { source: "lenet/train_lmdb" batch_size: 4 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""
HDF5_NET = """name: "h5"
layer { name: "data" type: "HDF5Data" top: "data" top: "label"
  hdf5_data_param { source: "missing_list.txt" batch_size: 4 } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip"
  inner_product_param { num_output: 3 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.mark.parametrize("api", ["solver", "pycaffe"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_solver_is_refused(case: str, api: str, work: Path) -> None:
    text, error, match = CASES[case]
    (work / "hdf5.prototxt").write_text(HDF5_NET)
    (work / "crop.prototxt").write_text(CROP_NET)
    path = work / f"{case}.prototxt"
    path.write_text(BASE + text)
    feed = batches()
    with pytest.raises(error, match=match) as got:
        if api == "solver":
            caffe_fx.Solver(path, inputs=lambda it: feed[0])
        else:
            caffe.get_solver(path)
    if not case.startswith("data_"):  # a data layer's error names the net file and layer
        assert str(path) in str(got.value)
    # The solvers read their batches: no advice to give shapes instead, which they don't take.
    assert "input_shapes" not in str(got.value) and "--input-shape" not in str(got.value)


@pytest.mark.parametrize("api", ["solver", "pycaffe"])
def test_every_problem_of_a_solver_file_comes_at_once(api: str, work: Path) -> None:
    (work / "s.prototxt").write_text(
        'type: "Momentum"\nlr_policy: "cosine"\ndisplay: -1\nmax_iter: 5\n'
        'train_net: "missing_train.prototxt"\ntest_net: "tiny.prototxt"\n'
        'test_net: "missing_test.prototxt"\ntest_iter: 1\ntest_interval: 0\n'
        'snapshot: 2\nsnapshot_prefix: "nowhere/tiny"\n')
    with pytest.raises(ProtoError) as got:
        if api == "solver":
            caffe_fx.Solver("s.prototxt", inputs=lambda it: {})
        else:
            caffe.get_solver("s.prototxt")
    assert isinstance(got.value, NetDefinitionError)  # both kinds, in one error
    message = str(got.value)
    assert message.startswith("s.prototxt: 3 kinds of problems stop this solver:\n")
    for said in ("type = 'Momentum': Unknown solver type",
                 "lr_policy = 'cosine': Unknown learning rate policy",
                 "display = -1; it must be >= 0",
                 "snapshot_prefix = 'nowhere/tiny': the folder 'nowhere' does not exist",
                 "test_iter must be specified for each test network: 2 test nets, 1 test_iter",
                 "test_interval = 0; it must be > 0 when the solver has test nets",
                 "train_net = 'missing_train.prototxt': no such prototxt file",
                 "test_net[1] = 'missing_test.prototxt': no such prototxt file"):
        assert said in message, said
    assert "tiny.prototxt'" not in message  # the file that is there


def test_only_compile_suggests_input_shapes_for_a_missing_source(work: Path) -> None:
    (work / "hdf5.prototxt").write_text(HDF5_NET)
    with pytest.raises(DataSourceError) as got:
        caffe.Net(str(work / "hdf5.prototxt"), caffe.TRAIN)
    assert "missing_list.txt" in str(got.value) and "input_shapes" not in str(got.value)
    with pytest.raises(DataSourceError, match=r"give the tops' shapes with input_shapes=\{"):
        caffe_fx.compile(work / "hdf5.prototxt", phase="train")


def test_input_blobs_without_inputs(work: Path) -> None:
    (work / "s.prototxt").write_text(BASE + NET)
    with pytest.raises(InputError, match=r"input blob\(s\) \['data', 'label'\] are filled by "
                       r"no data layer; give them with Solver\(inputs="):
        caffe_fx.Solver("s.prototxt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_gpu_mode_without_cuda(work: Path) -> None:
    (work / "s.prototxt").write_text(BASE + NET + "solver_mode: GPU\ndevice_id: 0\n")
    with pytest.raises(DeviceError, match=r"s.prototxt: solver_mode = GPU, device_id = 0: CUDA "
                       "is not available"):
        caffe_fx.Solver("s.prototxt", inputs=lambda it: {})
    with pytest.raises(DeviceError, match=r"Solver\(device='cuda'\): CUDA is not available"):
        caffe_fx.Solver("s.prototxt", device="cuda", inputs=lambda it: {})


def test_bad_signal_effect(work: Path) -> None:
    with pytest.raises(InputError, match=r"on_sigint='quit'.*allowed: 'stop', 'snapshot', "
                       "'none'"):
        caffe_fx.Solver("sgd_solver.prototxt", on_sigint="quit")  # type: ignore[arg-type]


def test_weights_of_which_nothing_fits_are_said(work: Path) -> None:
    """Fine-tuning from a caffemodel none of whose layers the net has copied nothing and
    said nothing (caffe-fx train --weights exited 0 with an empty stderr)."""
    from caffe_fx.errors import UnusedWeightsWarning
    from caffe_fx.proto import caffe_pb2

    other = caffe_pb2.NetParameter()
    blob = other.layer.add(name="elsewhere", type="InnerProduct").blobs.add()
    blob.shape.dim.append(1)
    blob.data.append(1.0)
    (work / "other.caffemodel").write_bytes(other.SerializeToString())
    (work / "s.prototxt").write_text(BASE + NET)
    with pytest.warns(UnusedWeightsWarning, match=r"other.caffemodel: none of its layers with "
                      r"blobs is a layer of the net, so nothing was copied \(Ignoring source "
                      r"layer: elsewhere\)"):
        caffe_fx.Solver("s.prototxt", weights="other.caffemodel",
                        inputs=lambda it: batches()[it % 3])


def test_inputs_that_are_not_callables_or_return_no_mapping(work: Path) -> None:
    (work / "s.prototxt").write_text(BASE + NET)
    with pytest.raises(InputError, match=r"Solver\(inputs=5\): allowed: None or a "
                       r"callable\(iteration\) -> \{blob: array\}"):
        caffe_fx.Solver("s.prototxt", inputs=5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"Solver\(test_inputs=\[\]\): allowed: None or a "
                       r"callable\(test_net_index, test_iteration\)"):
        caffe_fx.Solver("s.prototxt", inputs=lambda it: {}, test_inputs=[])  # type: ignore
    solver = caffe_fx.Solver("s.prototxt", inputs=lambda it: batches()[0]["data"])
    with pytest.raises(InputError, match=r"Solver\(inputs=...\) returned ndarray for "
                       r"iteration 0; allowed: a mapping \{blob name: array\}"):
        solver.step(1)


@pytest.mark.parametrize("iters", ["2", 1.5, True, None])
def test_step_takes_whole_numbers_only(iters, work: Path) -> None:
    (work / "s.prototxt").write_text(BASE + NET)
    feed = batches()
    for solver in (caffe_fx.Solver("s.prototxt", inputs=lambda it: feed[0]),
                   caffe.get_solver("s.prototxt")):
        with pytest.raises(InputError, match=r"step\(.*\): allowed: a whole number of "
                                             r"iterations >= 0"):
            solver.step(iters)
