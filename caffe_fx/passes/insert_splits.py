"""Inserts Caffe's implicit Split layers where one top feeds several consumers.

NetParameter -> NetParameter (a copy), run after filter_phase exactly as Net::Init does,
so that blob and layer names (`<blob>_<layer>_<i>_split_<k>`) are Caffe's own.
Mirrors src/caffe/util/insert_splits.cpp, including its quirk that only an *explicit*
nonzero loss_weight counts as a consumer.
"""
from __future__ import annotations

from collections import Counter

from ..errors import together
from ..frontend.graph import wiring_problems
from ..proto import caffe_pb2

TopId = tuple[int, int]  # (layer index, top index)


def split_layer_name(blob: str, layer: str, top_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(blob: str, layer: str, top_index: int, k: int) -> str:
    return f"{blob}_{layer}_{top_index}_split_{k}"


def insert_splits(net: caffe_pb2.NetParameter, where: str = "<net>") -> caffe_pb2.NetParameter:
    problems = wiring_problems(net, where)
    if problems:
        raise together(problems, where)
    last_writer: dict[str, TopId] = {}
    source_of: dict[TopId, TopId] = {}  # (layer, bottom index) -> producing top
    uses: Counter[TopId] = Counter()
    loss_weight: dict[TopId, float] = {}
    for i, layer in enumerate(net.layer):
        for j, blob in enumerate(layer.bottom):
            source_of[(i, j)] = last_writer[blob]
            uses[last_writer[blob]] += 1
        for j, blob in enumerate(layer.top):
            last_writer[blob] = (i, j)
        for j in range(min(len(layer.loss_weight), len(layer.top))):
            top = last_writer[layer.top[j]]
            loss_weight[top] = layer.loss_weight[j]
            if layer.loss_weight[j]:
                uses[top] += 1

    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    handed_out: Counter[TopId] = Counter()
    for i, layer in enumerate(net.layer):
        new = out.layer.add()
        new.CopyFrom(layer)
        for j, blob in enumerate(layer.bottom):
            src = source_of[(i, j)]
            if uses[src] > 1:
                new.bottom[j] = split_blob_name(blob, net.layer[src[0]].name, src[1],
                                                handed_out[src])
                handed_out[src] += 1
        for j, blob in enumerate(layer.top):
            count = uses[(i, j)]
            if count <= 1:
                continue
            split = out.layer.add()
            split.name = split_layer_name(blob, layer.name, j)
            split.type = "Split"
            split.bottom.append(blob)
            weight = loss_weight.get((i, j), 0.0)
            for k in range(count):
                split.top.append(split_blob_name(blob, layer.name, j, k))
                if weight:
                    split.loss_weight.append(weight if k == 0 else 0.0)
            if weight:
                # The loss is now carried by the split's top 0; consumers start at 1.
                del new.loss_weight[:]
                handed_out[(i, j)] += 1
    return out
