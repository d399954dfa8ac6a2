"""`caffe.Layer` and Caffe's "Python" layer type, run only where code is trusted.

pycaffe facade.  Mirrors include/caffe/layers/python_layer.hpp (param_str and phase set
before setup; reshape before every forward; backward(top, propagate_down, bottom)) and the
Layer/BlobVec bindings of python/caffe/_caffe.cpp.  The "Python" type's lowering and trust
(only a caffe_fx.pycaffe.Net, or caffe_fx.compile(..., trust_python_layers=True), imports
python_param.module) are caffe_fx/lowering/layers/python.py's; this module hands it the
runtime, on import.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import PycaffeNotImplementedError
from ..lowering.layers.python import set_runtime
from ..lowering.registry import CaffeModule, LayerView
from ..proto import caffe_pb2
from .blob import Blob


class BlobVec(list):
    """A layer's `blobs`: a list of Blob with pycaffe's `add_blob(*shape)` (zero-filled)."""

    def add_blob(self, *shape: int) -> None:
        for k, d in enumerate(shape):
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0:
                raise PycaffeNotImplementedError(
                    f"blobs.add_blob{tuple(shape)}: dimension {k} = {d!r}; allowed: "
                    "non-negative ints, given positionally")
        tensor = torch.nn.Parameter(torch.zeros([int(d) for d in shape], device="cpu"),
                                    requires_grad=False)
        self.append(Blob.of_tensor(tensor))


class Layer:
    """pycaffe's `caffe.Layer`: subclass it and define setup, reshape, forward, backward.

    Caffe sets `param_str` (python_param.param_str) and `phase` (0 TRAIN, 1 TEST) before
    calling setup(bottom, top); `bottom`/`top` are lists of Blob.  `param_str_` holds the
    same string, as the Fast R-CNN fork of Caffe named it (its layers read that name)."""

    param_str_: str = ""

    param_str: str = ""
    phase: int = caffe_pb2.TEST

    def __init__(self, param: caffe_pb2.LayerParameter | None = None) -> None:
        self.blobs = BlobVec()

    @property
    def type(self) -> str:
        return "Python"

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        """Layer::LayerSetUp: nothing by default."""

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise PycaffeNotImplementedError(f"{type(self).__name__} defines no reshape(bottom, top)")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise PycaffeNotImplementedError(f"{type(self).__name__} defines no forward(bottom, top)")

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        raise PycaffeNotImplementedError(
            f"{type(self).__name__} defines no backward(top, propagate_down, bottom)")


class _Live:
    """The layer object and its top blobs, shared (not copied) by every copy of a module:
    one Python layer per Caffe layer, as in Caffe, whatever GraphModules run it."""

    def __init__(self, layer: Layer, tops: list[Blob]) -> None:
        self.layer = layer
        self.tops = tops

    def __deepcopy__(self, memo: dict) -> _Live:
        return self


class PythonLayerModule(CaffeModule):
    """Runs a Python layer on NumPy views: reshape then forward, the tops come back as
    tensors.  On meta tensors (shape inference) it gives the tops reshape() set up.
    Impure: torch.fx keeps it when nothing reads its tops (a layer without tops runs)."""

    _is_impure = True

    def __init__(self, layer: Layer, tops: list[Blob]) -> None:
        super().__init__()
        self.live = _Live(layer, tops)
        blobs = getattr(layer, "blobs", [])
        self.caffe_blobs = tuple(f"blob{k}" for k in range(len(blobs)))
        for name, blob in zip(self.caffe_blobs, blobs):
            tensor = blob._param
            if not isinstance(tensor, torch.nn.Parameter):
                tensor = torch.nn.Parameter(torch.from_numpy(np.ascontiguousarray(
                    blob.data, np.float32)), requires_grad=False)
            self.register_parameter(name, tensor)
        self.top_shapes: list[tuple[int, ...]] = []
        self.shape_only = False

    def blobs_settled(self) -> None:
        """compile() loaded weights into new tensors: the layer object's own blobs (which
        its code reads) take their values and stay the module's parameters."""
        blobs = self.live.layer.blobs
        with torch.no_grad():
            for name, blob in zip(self.caffe_blobs, blobs):
                loaded = getattr(self, name)
                if isinstance(blob._param, torch.nn.Parameter):
                    if blob._param is not loaded:
                        blob._param.copy_(loaded)
                        self._parameters[name] = blob._param
                else:
                    blob.data[...] = loaded.detach().numpy().reshape(blob.shape)

    def forward(self, *bottoms: torch.Tensor) -> Any:
        if self.shape_only or any(b.is_meta for b in bottoms):
            self.shape_only = False
            outs = [torch.empty(s, device="meta") for s in self.top_shapes]
        elif self.live.tops and torch.is_grad_enabled() \
                and any(b.requires_grad for b in bottoms):
            outs = list(_PythonLayerFunction.apply(self.live, *bottoms))
        else:
            outs = _run_forward(self.live, bottoms)[1]
            if not bottoms and torch.is_grad_enabled():
                # A data layer in the facade: its tops start the autograd graph, as an
                # Input's do, so that force_backward gives the layers after it diffs.
                outs = [o.requires_grad_() for o in outs]
        if not outs:
            return None
        return outs[0] if len(outs) == 1 else tuple(outs)


def _run_forward(live: _Live, bottoms: Sequence[torch.Tensor]
                 ) -> tuple[list[Blob], list[torch.Tensor]]:
    """Layer::Forward of a Python layer on host copies of the bottoms: reshape, then
    forward; the tops come back as tensors on the bottoms' device."""
    device = bottoms[0].device if bottoms else torch.device("cpu")
    bottom = [Blob(b.detach().to("cpu", torch.float32).contiguous().numpy().copy())
              for b in bottoms]
    with torch.device("cpu"):
        live.layer.reshape(bottom, live.tops)  # Layer::Forward reshapes first
        live.layer.forward(bottom, live.tops)
    return bottom, [torch.from_numpy(np.array(t.data, np.float32)).to(device)
                    for t in live.tops]


class _PythonLayerFunction(torch.autograd.Function):
    """A Python layer inside autograd: its backward is the layer's own backward(top,
    propagate_down, bottom), with the tops' diffs set from the incoming gradients and
    the bottoms holding the data forward saw (PythonLayer::Backward_cpu)."""

    @staticmethod
    def forward(ctx: Any, live: _Live, *bottoms: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bottom, outs = _run_forward(live, bottoms)
        ctx.live, ctx.bottom = live, bottom
        ctx.devices = [b.device for b in bottoms]
        return tuple(outs)

    @staticmethod
    def backward(ctx: Any, *top_grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        live, bottom = ctx.live, ctx.bottom
        for blob, grad in zip(live.tops, top_grads):
            blob.set_diff(grad.to("cpu", torch.float32) if grad is not None else None)
        flags = [bool(f) for f in ctx.needs_input_grad[1:]]
        for blob in bottom:
            blob.set_diff(None)
        with torch.device("cpu"):
            live.layer.backward(list(live.tops), flags, bottom)
        grads = [torch.from_numpy(b.diff.copy()).to(d) if f else None
                 for b, f, d in zip(bottom, flags, ctx.devices)]
        return (None, *grads)


class _Runtime:
    """What lowering/layers/python.py runs Python layers with (its `Runtime`): the layer
    object on pycaffe's Blobs, set up and reshaped as python_layer.hpp does."""

    def set_up(self, view: LayerView, cls: type) -> PythonLayerModule:
        """Layer::SetUp: the object made with the LayerParameter, param_str and phase
        set, then setup and reshape on zero bottoms of the view's shapes."""
        with torch.device("cpu"):
            layer = cls(view.param)
        return self.set_up_object(view, layer)

    def set_up_object(self, view: LayerView, layer: Any) -> PythonLayerModule:
        """Layer::SetUp of a layer object already made (a `layers=` factory's result, as
        caffemodel2pytorch's modules= allows): param_str and phase set, setup, reshape."""
        p = view.param.python_param
        bottom = [Blob(np.zeros(s, np.float32)) for s in view.input_shapes]
        with torch.device("cpu"):
            if not isinstance(getattr(layer, "blobs", None), BlobVec):
                layer.blobs = BlobVec()  # a subclass that skipped Layer.__init__
            if view.param.HasField("python_param") or not getattr(layer, "param_str", ""):
                layer.param_str = p.param_str
                layer.param_str_ = p.param_str  # the name rbgirshick's caffe-fast-rcnn fork sets
            layer.phase = int(view.phase)
            tops = [Blob(np.zeros((0,), np.float32)) for _ in view.tops]
            layer.setup(bottom, tops)
            layer.reshape(bottom, tops)
            module = PythonLayerModule(layer, tops)
        return self._shape_only(module)

    def reshape(self, module: CaffeModule, view: LayerView) -> PythonLayerModule:
        """Net::Reshape after new input shapes: the same layer object reshapes."""
        assert isinstance(module, PythonLayerModule)
        bottom = [Blob(np.zeros(s, np.float32)) for s in view.input_shapes]
        with torch.device("cpu"):
            module.live.layer.reshape(bottom, module.live.tops)
        return self._shape_only(module)

    @staticmethod
    def _shape_only(module: PythonLayerModule) -> PythonLayerModule:
        module.top_shapes = [tuple(t.shape) for t in module.live.tops]
        module.shape_only = True
        return module


set_runtime(_Runtime())


def own_layers(layers: Mapping[str, PythonLayerModule],
                tensors: Mapping[str, list[torch.Tensor]]) -> dict[str, Layer]:
    """The layer objects whose blobs are still the net's tensors: pycaffe's `net.layers`
    shows the Python object itself (its `blobs` are the net's params)."""
    out = {}
    for name, module in layers.items():
        blobs = module.live.layer.blobs
        mine = tensors.get(name, [])
        if len(blobs) == len(mine) and all(b._param is t for b, t in zip(blobs, mine)):
            out[name] = module.live.layer
    return out
