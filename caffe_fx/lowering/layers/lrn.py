"""LRN (lrn_param): local response normalization across or within channels.

Mirrors src/caffe/layers/lrn_layer.cpp.  ACROSS_CHANNELS divides alpha by local_size and
is F.local_response_norm for odd sizes (ops/lrn.py's lrn_across_channels, with Caffe's
backward); WITHIN_CHANNEL divides alpha by local_size^2 and ignores k (Caffe hard-codes
the shift to 1).  In place (top == bottom),
Caffe's CPU ACROSS_CHANNELS forward returns scale^(-2 beta) instead of x scale^-beta; we
match the CPU (the reference); Caffe's GPU kernel computes the usual value.  In place,
both kinds differentiate as Caffe's CPU backward does on the overwritten data (ops/lrn.py).
"""
from __future__ import annotations

from ...ops import lrn as L
from ...proto import caffe_pb2
from ..registry import Call, LayerView, register
from ..._limits import check_shape

_L = caffe_pb2.LRNParameter


@register("LRN", params=("lrn_param",), bottoms=1, tops=1)
def lrn(view: LayerView) -> Call:
    p = view.param.lrn_param
    if len(view.input_shapes[0]) != 4:
        raise view.fail("bottom shape", list(view.input_shapes[0]), "4-D (N, C, H, W) bottoms")
    if p.local_size % 2 != 1:
        raise view.fail("lrn_param.local_size", p.local_size, "odd sizes")
    if p.norm_region == _L.ACROSS_CHANNELS:
        # LRNLayer::Reshape sizes padded_square_ (C + local_size - 1 channels); our window
        # sums pad the whole batch so.  A local_size far beyond the channels is refused
        # here by the blob limit, as Caffe's Blob::Reshape refuses it, before any forward.
        n, c, h, w = view.input_shapes[0]
        check_shape((n, c + p.local_size - 1, h, w),
                    f"layer '{view.name}' (LRN): lrn_param.local_size = {p.local_size} "
                    "needs a zero-padded window buffer, which")
        if view.tops[0] == view.bottoms[0]:
            return Call(L.lrn_across_channels_inplace, dict(size=p.local_size, alpha=p.alpha,
                                                            beta=p.beta, k=p.k))
        # F.local_response_norm's values, with Caffe's backward in fewer passes.
        return Call(L.lrn_across_channels, dict(size=p.local_size, alpha=p.alpha,
                                                beta=p.beta, k=p.k))
    if p.norm_region == _L.WITHIN_CHANNEL:
        fn = L.lrn_within_channel_inplace if view.tops[0] == view.bottoms[0] \
            else L.lrn_within_channel
        return Call(fn, dict(size=p.local_size, alpha=p.alpha, beta=p.beta))
    raise view.fail("lrn_param.norm_region", _L.NormRegion.Name(p.norm_region),
                    "ACROSS_CHANNELS, WITHIN_CHANNEL")
