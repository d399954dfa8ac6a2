"""`caffe_fx.compile`: prototxt (+ caffemodel) -> torch.fx.GraphModule.

Runs the pipeline (pipeline.py: read, Net::Net's NetState, filter_phase, insert_splits,
the layer DAG, the fx build with every blob's shape) and binds the weights
(binding.py: Net::CopyTrainedLayersFrom in src/caffe/net.cpp, or Caffe's fillers); the
caffemodel is read in a thread meanwhile.
"""
from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from torch import fx

from . import binding, pipeline
from .binding import WeightsSource
from .errors import InputError
from .frontend.read import NetSource, StoredWeights
from .proto import caffe_pb2

__all__ = ["compile"]


def compile(  # noqa: A001  (the public name the design asks for)
    prototxt: NetSource,
    weights: WeightsSource = None,
    *,
    phase: Literal["train", "test"] | int = "test",
    level: int = 0,
    stages: Sequence[str] = (),
    outputs: Sequence[str] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    caffe_proto: str | os.PathLike | None = None,
    trust_python_layers: bool = False,
    layers: Mapping[str, Callable[[dict], Any]] | None = None,
    strict: bool = False,
    fuse: bool = True,
) -> fx.GraphModule:
    """Compiles a Caffe net to a torch.fx.GraphModule that computes what Caffe computes.

    Args:
        prototxt: a path to a .prototxt, prototxt text, or a `caffe_pb2.NetParameter`.
            Legacy V0/V1 nets are upgraded as Caffe does.
        weights: a .caffemodel (binary, any legacy format) or .caffemodel.h5 path, or a
            mapping {layer name: [arrays]}.  Layers are matched by name; layers absent
            from the net are skipped.  Without weights, blobs get Caffe's fillers.
        phase, level, stages: the NetState for include/exclude rules, made as Caffe's
            Net::Net makes it: the prototxt's own `state` with this phase and level, and
            these stages after its own.
        outputs: blobs to return (default: the net's outputs, blobs no layer consumes);
            layers not needed for them are left out.
        input_shapes: shapes of input blobs, overriding Input layers and required for
            data layers (Data, ImageData, HDF5Data, ...), whose tops become inputs.
        caffe_proto: a fork's caffe.proto, for prototxts with fields BVLC lacks
            (compiled with grpcio-tools or protoc; a clear error says if neither is there).
        trust_python_layers: run the code of "Python" layers: python_param.module is
            imported from sys.path and its layer class set up, as pycaffe does.  Off by
            default, so that compiling a net never runs code it names.  Such a
            GraphModule runs eagerly; its Python layers cannot be scripted or exported.
            Python layers without bottoms (data layers) are never imported: their tops
            become inputs, whose shapes input_shapes= gives, as for Data layers.
        layers: {layer type: factory}, caffemodel2pytorch's `modules=`: each layer of a
            type named here (or a Python layer whose python_param.layer is named) is
            made by `factory(param)`, `param` being the layer's `*_param` as a dict; the
            factory returns an nn.Module, a function of the bottoms, an autograd.Function
            class or a pycaffe Layer object (caffe_fx/layers.py).  For this call only;
            caffe_fx.register_layer registers a type for the process.  Naming a built-in
            type replaces it, with a LayerOverrideWarning.
        strict: weights that do not fit (a layer of the net with blobs they lack, a layer
            with blobs they hold that the net lacks) raise WeightsError instead of the
            one `caffe_fx.errors.UnusedWeightsWarning` that lists them.
        fuse: each 2-D Convolution followed by any of a BatchNorm (global statistics), a
            Scale, a two-bottom Eltwise SUM (a residual block's) and a ReLU, in that
            order, becomes one node (caffe_fx/lowering/fuse.py) when nothing else reads
            the values between them: without autograd on the CPU one oneDNN convolution
            with the BatchNorm and Scale folded into its weight and the sum and ReLU
            inside it (rounding differs from Caffe's layer by layer arithmetic;
            within 1e-4 on the published nets); under autograd, TorchScript, export or on
            CUDA each layer's own arithmetic.  False keeps one node per layer.

    Returns:
        A GraphModule taking the input blobs as keyword (or positional, in Caffe's order)
        arguments and returning {blob name: tensor}.  `gm.meta["caffe"]` holds the
        input/output names and every blob's shape.
    """
    from .layers import layers_overlay

    _check_arguments(prototxt, weights, level, stages, outputs, input_shapes)
    stored_weights = _read_weights_meanwhile(weights)  # the disk works while we build
    # A loss layer without a top gets Caffe's "(automatic)" blob: an output here, so that
    # a training loop can call backward on it.
    with layers_overlay(layers):
        prepared = pipeline.prepare(prototxt, phase=phase, level=level, stages=stages,
                                    caffe_proto=caffe_proto)
        built = pipeline.lower(prepared, input_shapes=input_shapes, outputs=outputs,
                               python_layers={} if trust_python_layers else None)
    stored = stored_weights()
    where = _describe_weights(weights) if weights is not None else prepared.where
    pipeline.in_step("bind", binding.bind, built, prepared.net, stored, where, strict=strict)
    gm = built.gm
    if fuse:
        from .lowering.fuse import fuse_conv_chains

        pipeline.in_step("fuse", fuse_conv_chains, gm)
    gm.eval() if prepared.net.state.phase == caffe_pb2.TEST else gm.train()
    return gm


def _describe_weights(weights: WeightsSource) -> str:
    return "<weights mapping>" if isinstance(weights, Mapping) else os.fspath(weights) \
        if weights is not None else "<no weights>"


def _check_arguments(prototxt: Any, weights: Any, level: Any, stages: Any, outputs: Any,
                     input_shapes: Any) -> None:
    """compile()'s arguments of the wrong kind, all in one InputError, before anything is
    read (a string given as stages= would otherwise be read as its letters)."""
    problems = []
    if not isinstance(prototxt, (str, os.PathLike, caffe_pb2.NetParameter)):
        problems.append(f"prototxt of type {type(prototxt).__name__}; allowed: a path, "
                        "prototxt text or a caffe_pb2.NetParameter")
    if weights is not None and not isinstance(weights, (str, os.PathLike, Mapping)):
        problems.append(f"weights of type {type(weights).__name__}; allowed: None, a path "
                        "or a mapping {layer name: [arrays]}")
    problems += pipeline.state_problems(level, stages)
    if outputs is not None:
        problems += pipeline.names_problems(outputs, "outputs")
    if input_shapes is not None:
        if not isinstance(input_shapes, Mapping):
            problems.append(f"input_shapes of type {type(input_shapes).__name__}; allowed: "
                            "a mapping {input blob: shape}, e.g. {'data': (1, 3, 224, 224)}")
        else:
            for name, shape in input_shapes.items():
                # the dims themselves (ints >= 0, the size limits) are the builder's
                if not isinstance(name, str) or isinstance(shape, (str, bytes)) \
                        or not isinstance(shape, (Sequence, np.ndarray)):
                    problems.append(f"input_shapes[{name!r}] = {shape!r}; allowed: a blob "
                                    "name and a sequence of ints")
    if problems:
        raise InputError("compile(): " + "; ".join(problems))


def _read_weights_meanwhile(weights: WeightsSource) -> Callable[[], StoredWeights | None]:
    """Starts reading a caffemodel in a thread (file reads release the GIL) and returns
    the function that waits for it; its errors are raised there, after the net's."""
    if weights is None or isinstance(weights, Mapping):
        return lambda: binding.read(weights)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["stored"] = binding.read(weights)
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
            box["error"] = e

    # In the caller's context: its errors are spelled for the caller (errors.CALLER).
    thread = threading.Thread(target=contextvars.copy_context().run, args=(work,),
                              name="caffe_fx-read-weights", daemon=True)
    thread.start()

    def result() -> StoredWeights | None:
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["stored"]

    return result

