"""caffe_fx.pycaffe: a drop-in stand-in for BVLC pycaffe (python/caffe/), running on PyTorch.

    import caffe_fx.pycaffe as caffe
    net = caffe.Net("deploy.prototxt", caffe.TEST, weights="weights.caffemodel")
    prob = net.forward(data=images)["prob"]

Mirrors python/caffe/__init__.py; the Net and Blob live in net.py and blob.py.
"""
from __future__ import annotations

from typing import Any, NoReturn

from .. import proto
from ..errors import PycaffeNotImplementedError
from ..proto import caffe_pb2  # noqa: F401  (makes caffe.proto.caffe_pb2 resolve)
from . import io, net_spec
from .blob import Blob
from .net import (
    TEST,
    TRAIN,
    Net,
    layer_type_list,
    set_device,
    set_mode_cpu,
    set_mode_gpu,
    set_random_seed,
)
from .net_spec import NetSpec, layers, params, to_proto

__all__ = [
    "TEST",
    "TRAIN",
    "AdaDeltaSolver",
    "AdaGradSolver",
    "AdamSolver",
    "Blob",
    "NesterovSolver",
    "Net",
    "NetSpec",
    "RMSPropSolver",
    "SGDSolver",
    "get_solver",
    "io",
    "layer_type_list",
    "layers",
    "net_spec",
    "params",
    "proto",
    "set_device",
    "set_mode_cpu",
    "set_mode_gpu",
    "set_random_seed",
    "to_proto",
]


def get_solver(filename: str) -> NoReturn:
    raise PycaffeNotImplementedError(
        f"get_solver({filename!r}) is not implemented yet in caffe_fx.pycaffe")


class _Solver:
    def __init__(self, filename: str, *args: Any, **kwargs: Any) -> None:
        raise PycaffeNotImplementedError(
            f"{type(self).__name__}({filename!r}) is not implemented yet in caffe_fx.pycaffe")


class SGDSolver(_Solver):
    pass


class NesterovSolver(_Solver):
    pass


class AdaGradSolver(_Solver):
    pass


class RMSPropSolver(_Solver):
    pass


class AdaDeltaSolver(_Solver):
    pass


class AdamSolver(_Solver):
    pass
