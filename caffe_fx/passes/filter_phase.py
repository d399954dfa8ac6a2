"""Keeps the layers whose include/exclude rules match the net's NetState.

First pass of the pipeline (NetParameter -> NetParameter, a copy).  The state is the
net's own `state`, which pipeline.with_state sets as Net::Net does (the file's state,
phase and level overridden, stages appended).  Mirrors Net::FilterNet and
Net::StateMeetsRule in src/caffe/net.cpp.
"""
from __future__ import annotations

from ..errors import NetDefinitionError
from ..proto import caffe_pb2


def rule_met(state: caffe_pb2.NetState, rule: caffe_pb2.NetStateRule) -> bool:
    """A rule holds when every condition it sets holds; unset conditions always hold."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    stages = set(state.stage)
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def filter_phase(net: caffe_pb2.NetParameter, where: str = "<net>") -> caffe_pb2.NetParameter:
    """The layers whose rules `net.state` meets, and that state (Net::FilterNet)."""
    state = net.state
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    for layer in net.layer:
        if layer.include and layer.exclude:
            raise NetDefinitionError(
                f"{where}: layer '{layer.name}' ({layer.type}) specifies both include and "
                "exclude rules; allowed: one kind or the other")
        # Only include rules: kept iff any is met.  Only exclude rules: kept unless any is met.
        if layer.include:
            keep = any(rule_met(state, r) for r in layer.include)
        else:
            keep = not any(rule_met(state, r) for r in layer.exclude)
        if keep:
            out.layer.add().CopyFrom(layer)
    return out
