"""`caffe.draw`: pycaffe's net drawing functions over caffe_fx.drawing's DOT output.

pycaffe facade.  Mirrors the public functions of python/caffe/draw.py (draw_net,
draw_net_to_file, get_pydot_graph, ...) on a `caffe_pb2.NetParameter`; the graph itself
is caffe_fx.drawing's (Graphviz's `dot` renders it; pydot only for get_pydot_graph).
Learning-rate multipliers (display_lrm) are not drawn.
"""
from __future__ import annotations

import os
from typing import Any

from .. import drawing
from .._atomic import atomic_write
from ..errors import MissingDependencyError, PycaffeNotImplementedError
from ..proto import caffe_pb2

LAYER_STYLE_DEFAULT = {"shape": "record", "fillcolor": drawing.LAYER_COLOR_DEFAULT,
                       "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": drawing.INPLACE_COLOR, "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": drawing.BLOB_COLOR, "style": "filled"}


def get_pooling_types_dict() -> dict[int, str]:
    """{PoolMethod value: name}."""
    return {v.number: v.name for v in caffe_pb2.PoolingParameter.PoolMethod.DESCRIPTOR.values}


def get_edge_label(layer: caffe_pb2.LayerParameter) -> str:
    label = drawing._edge_label(layer)
    return '""' if label is None else label


def get_layer_lr_mult(layer: caffe_pb2.LayerParameter) -> tuple[float, float]:
    """(weight, bias) lr_mult of a Convolution, Deconvolution or InnerProduct layer."""
    if layer.type not in ("Convolution", "Deconvolution", "InnerProduct"):
        raise ValueError(f"{layer.type} layers do not have a learning rate multiplier")
    mults = [p.lr_mult for p in layer.param]
    if len(mults) > 2:
        raise ValueError(f"layer '{layer.name}': Could not parse the learning rate multiplier "
                         f"({len(mults)} param entries; allowed: 0 to 2)")
    return tuple(mults + [1.0] * (2 - len(mults)))  # type: ignore[return-value]


def get_layer_label(layer: caffe_pb2.LayerParameter, rankdir: str,
                    display_lrm: bool = False) -> str:
    """The layer's label: name, (type), kernel/stride/pad, joined for the layout."""
    _check_lrm(display_lrm)
    separator = " " if rankdir in ("TB", "BT") else r"\n"
    return '"' + separator.join(drawing.layer_label(layer)) + '"'


def choose_color_by_layertype(layertype: str) -> str:
    return drawing.LAYER_COLORS.get(layertype, drawing.LAYER_COLOR_DEFAULT)


def _phase_name(phase: int | None) -> str | None:
    if phase is None:
        return None
    if phase not in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        raise ValueError(f"phase = {phase!r}; allowed: caffe.TRAIN, caffe.TEST, None")
    return "train" if phase == caffe_pb2.TRAIN else "test"


def _check_lrm(display_lrm: bool) -> None:
    if display_lrm:
        raise PycaffeNotImplementedError(
            "caffe.draw: display_lrm=True (learning-rate multipliers in the labels) is not "
            "implemented in caffe_fx.pycaffe; call with display_lrm=False")


def _dot(caffe_net: caffe_pb2.NetParameter, rankdir: str, label_edges: bool,
         phase: int | None, display_lrm: bool) -> str:
    _check_lrm(display_lrm)
    return drawing.net_to_dot(caffe_net, phase=_phase_name(phase), rankdir=rankdir,
                              label_edges=label_edges)


def get_pydot_graph(caffe_net: caffe_pb2.NetParameter, rankdir: str, label_edges: bool = True,
                    phase: int | None = None, display_lrm: bool = False) -> Any:
    """The drawing as a pydot.Dot (needs the pydot package)."""
    try:
        import pydot  # type: ignore[import-not-found]
    except ImportError as e:
        raise MissingDependencyError("caffe.draw.get_pydot_graph() needs the pydot package "
                                     "(pip install pydot); draw_net() does not") from e
    (graph,) = pydot.graph_from_dot_data(_dot(caffe_net, rankdir, label_edges, phase,
                                              display_lrm))
    return graph


def draw_net(caffe_net: caffe_pb2.NetParameter, rankdir: str, ext: str = "png",
             phase: int | None = None, display_lrm: bool = False) -> bytes:
    """The drawing in format `ext` (png, svg, pdf through Graphviz's `dot`; dot/raw:
    the DOT text itself)."""
    text = _dot(caffe_net, rankdir, True, phase, display_lrm)
    if ext in ("dot", "raw", "gv"):
        return text.encode()
    return drawing.render(text, ext)


def draw_net_to_file(caffe_net: caffe_pb2.NetParameter, filename: str | os.PathLike,
                     rankdir: str = "LR", phase: int | None = None,
                     display_lrm: bool = False) -> None:
    """Writes the drawing in the format of the file's extension (replaces the file, as
    pycaffe does)."""
    name = os.fspath(filename)
    ext = name[name.rfind(".") + 1:]
    data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    with atomic_write(filename, force=True) as f:
        f.write(data)
