"""Names the top Caffe creates for a loss layer written without one: "(automatic)".

Facade pass (NetParameter -> NetParameter, a copy), after insert_splits: caffe_fx.pycaffe's
Net shows these blobs as real pycaffe does.  Mirrors Net::AppendTop in src/caffe/net.cpp
for a layer whose AutoTopBlobs() is true (LossLayer): Net::Init appends anonymous tops up
to max(MinTopBlobs, ExactNumTopBlobs), each a blob named "(automatic)" with loss weight 1
that backward starts from, but no output.  Caffe names them all alike; from the second on
they are "(automatic)#2", "(automatic)#3", ... (a dict keeps one blob per name).
"""
from __future__ import annotations

from collections.abc import Callable

from ..proto import caffe_pb2

AUTOMATIC = "(automatic)"

AutoTops = Callable[[str], int]  # layer type -> how many tops Caffe creates (0: none)


def is_automatic(blob: str) -> bool:
    return blob == AUTOMATIC or blob.startswith(AUTOMATIC + "#")


def name_automatic_tops(net: caffe_pb2.NetParameter, where: str = "<net>", *,
                        auto_tops: AutoTops) -> caffe_pb2.NetParameter:
    """`auto_tops` comes from the layer registry (lowering/registry.py); the pipeline
    passes it in, so that this pass does not depend on the lowering."""
    named = caffe_pb2.NetParameter()
    named.CopyFrom(net)
    count = 0
    for layer in named.layer:
        if layer.top:
            continue
        for _ in range(auto_tops(layer.type)):
            count += 1
            layer.top.append(AUTOMATIC if count == 1 else f"{AUTOMATIC}#{count}")
    return named


def automatic_blobs(net: caffe_pb2.NetParameter) -> frozenset[str]:
    """The tops this pass named."""
    return frozenset(t for layer in net.layer for t in layer.top if is_automatic(t))
