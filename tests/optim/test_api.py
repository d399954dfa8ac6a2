"""caffe_fx.optim's public surface (frozen: changing it must change this snapshot) and
the scheduler's own behaviour: state_dict round trip, restore, Caffe's multistep state."""
from __future__ import annotations

import inspect

import torch

from caffe_fx import optim
from caffe_fx.optim import SGD, CaffeLR


def test_all() -> None:
    assert sorted(optim.__all__) == sorted([
        "SGD", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam", "CaffeOptimizer",
        "CaffeLR", "POLICIES", "SOLVER_TYPES", "from_solver", "read_solver",
        "SolverState", "read_solverstate", "write_solverstate"])
    assert optim.POLICIES == ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid",
                              "plateau")


def test_signatures() -> None:
    assert str(inspect.signature(optim.from_solver)) == (
        "(solver: 'str | os.PathLike | caffe_pb2.SolverParameter', module: 'fx.GraphModule', "
        "*, iter_size: 'int | None' = None) -> 'tuple[CaffeOptimizer, CaffeLR]'")
    assert str(inspect.signature(optim.Adam)) == (
        "(params: 'Iterable[Any]', lr: 'float', momentum: 'float' = 0.9, "
        "weight_decay: 'float' = 0.0, regularization: 'str' = 'L2', "
        "clip_gradients: 'float' = -1.0, iter_size: 'int' = 1, delta: 'float' = 1e-08, "
        "momentum2: 'float' = 0.999) -> 'None'")
    assert str(inspect.signature(optim.write_solverstate)) == (
        "(path: 'str | os.PathLike', state: 'SolverState', *, hdf5: 'bool' = False, "
        "force: 'bool' = False) -> 'Path'")


def schedule() -> tuple[SGD, CaffeLR]:
    opt = SGD([torch.nn.Parameter(torch.zeros(2))], lr=1.0)
    return opt, CaffeLR(opt, "multistep", base_lr=1.0, gamma=0.5, stepvalue=[2, 3, 10])


def test_multistep_state_and_resume() -> None:
    opt, sched = schedule()
    seen = []
    for _ in range(5):
        seen.append((sched.last_epoch, opt.param_groups[0]["lr"], sched.current_step))
        opt.step()
        sched.step()
    # current_step: Caffe's current_step_ before the rate of that iteration is computed
    assert seen == [(0, 1.0, 0), (1, 1.0, 0), (2, 0.5, 0), (3, 0.25, 1), (4, 0.25, 2)]
    saved = sched.state_dict()
    _, sched2 = schedule()
    sched2.load_state_dict(saved)
    assert (sched2.last_epoch, sched2.current_step) == (5, 2)
    opt3, sched3 = schedule()
    sched3.restore(3, 1)  # a solverstate written after 3 iterations
    assert (opt3.param_groups[0]["lr"], sched3.current_step) == (0.25, 1)
