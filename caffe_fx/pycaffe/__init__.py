"""caffe_fx.pycaffe: a drop-in stand-in for BVLC pycaffe (python/caffe/), running on PyTorch.

    import caffe_fx.pycaffe as caffe
    net = caffe.Net("deploy.prototxt", caffe.TEST, weights="weights.caffemodel")
    prob = net.forward(data=images)["prob"]

Mirrors python/caffe/__init__.py; the Net and Blob live in net.py and blob.py.
"""
from __future__ import annotations

from .. import proto
from ..data import set_random_seed
from ..proto import caffe_pb2  # noqa: F401  (makes caffe.proto.caffe_pb2 resolve)
from . import draw, io, net_spec
from .blob import Blob
from .classifier import Classifier
from .detector import Detector
from .net import (
    TEST,
    TRAIN,
    Net,
    layer_type_list,
    set_device,
    set_mode_cpu,
    set_mode_gpu,
)
from .net_spec import NetSpec, layers, params, to_proto
from .parallel import (
    NCCL,
    Timer,
    has_nccl,
    init_log,
    log,
    set_multiprocess,
    set_solver_count,
    set_solver_rank,
    solver_count,
    solver_rank,
)
from .python_layer import Layer
from .shim import install
from .solver import (
    AdaDeltaSolver,
    AdaGradSolver,
    AdamSolver,
    NesterovSolver,
    RMSPropSolver,
    SGDSolver,
    get_solver,
)

# pycaffe's own (_caffe.cpp exports Caffe's AS_STRING(CAFFE_VERSION)): the API this
# facade follows, for scripts that check it.
__version__ = "1.0.0"

__all__ = [
    "TEST",
    "TRAIN",
    "AdaDeltaSolver",
    "AdaGradSolver",
    "AdamSolver",
    "Blob",
    "Classifier",
    "Detector",
    "Layer",
    "NCCL",
    "NesterovSolver",
    "Net",
    "NetSpec",
    "RMSPropSolver",
    "SGDSolver",
    "Timer",
    "draw",
    "get_solver",
    "has_nccl",
    "init_log",
    "install",
    "io",
    "layer_type_list",
    "layers",
    "log",
    "net_spec",
    "params",
    "proto",
    "set_device",
    "set_mode_cpu",
    "set_mode_gpu",
    "set_multiprocess",
    "set_random_seed",
    "set_solver_count",
    "set_solver_rank",
    "solver_count",
    "solver_rank",
    "to_proto",
]
