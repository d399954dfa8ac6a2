"""MVN (mvn_param): mean-variance normalisation per (n, c), or per n across channels.

Mirrors src/caffe/layers/mvn_layer.cpp: y = (x - mean) / (sqrt(biased var) + eps), eps
added to the standard deviation.  A legacy 4-D layer: the top is (N, C, H, W) with
missing axes as 1, so a 2-D bottom gives a 4-D top.  Backward is Caffe's formula
(ops/misc.py), not the derivative of the forward.
"""
from __future__ import annotations

from ...ops import misc as CM
from ..registry import Call, LayerView, register


@register("MVN", params=("mvn_param",), bottoms=1, tops=1)
def mvn(view: LayerView) -> Call:
    p = view.param.mvn_param
    if len(view.input_shapes[0]) > 4:
        raise view.fail("bottom shape", list(view.input_shapes[0]), "at most 4 axes")
    kwargs = dict(normalize_variance=p.normalize_variance,
                  across_channels=p.across_channels, eps=p.eps)
    if view.tops[0] == view.bottoms[0]:  # its backward overwrites the top diff it reads
        kwargs["top_is_bottom"] = True
    return Call(CM.mvn, kwargs)
