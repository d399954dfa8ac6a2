"""caffe_fx.optim: Caffe's solvers as torch optimizers, its lr policies as a scheduler,
and its .solverstate files.

Training stage (issue #9).  `from_solver("solver.prototxt", gm)` gives the optimizer and
scheduler a Caffe solver file describes over a GraphModule from `caffe_fx.compile()`;
each `optimizer.step()` is SGDSolver::ApplyUpdate (src/caffe/solvers/).
"""
from .lr import POLICIES, CaffeLR
from .solver_param import SOLVER_TYPES, from_solver, read_solver
from .solvers import SGD, AdaDelta, AdaGrad, Adam, CaffeOptimizer, Nesterov, RMSProp
from .state import SolverState, read_solverstate, write_solverstate

__all__ = [
    "POLICIES",
    "SGD",
    "SOLVER_TYPES",
    "AdaDelta",
    "AdaGrad",
    "Adam",
    "CaffeLR",
    "CaffeOptimizer",
    "Nesterov",
    "RMSProp",
    "SolverState",
    "from_solver",
    "read_solver",
    "read_solverstate",
    "write_solverstate",
]
