"""The one pipeline: a Caffe net -> NetParameter passes -> layer DAG -> fx GraphModule.

Every entry point runs it: caffe_fx.compile (compiler.py), summarize (`caffe-fx info`),
net_layout (`caffe-fx convert`), `caffe-fx draw` (its first pass) and caffe_fx.pycaffe's
Net.  In order, as Net::Net and Net::Init run them (src/caffe/net.cpp):

    read_net      frontend/read.py: parse, upgrade V0/V1
    with_state    Net::Net: the file's NetState, its phase and level overridden, the
                  given stages appended to its own
    PASSES        NetParameter -> NetParameter, each pure: filter_phase, insert_splits
                  (PROTO_PASSES: the net Net::ToProto writes), name_automatic_tops
    build_graph   frontend/graph.py: the layer DAG, in-place tops resolved
    build         lowering/builder.py: the fx graph, every blob's shape (node.meta["shape"])
    bind          binding.py: the weights, or Caffe's fillers (compile(); the facade copies)

An error raised in a pass or later step is raised again, same class, with the step named
("... [in pass insert_splits]") and chained from the original.  With the environment
variable CAFFE_FX_CHECK_PASSES=1 (the test suite sets it), invariants are checked after
every pass (it left its input unchanged, kept the NetState, left a wired net wired) and
after build (every blob node carries its shape).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import Any, TypeVar

import networkx as nx

from . import _malloc
from .errors import CaffeFxError, InputError, UnsupportedFieldError, together, with_message
from .frontend.graph import build_graph, wiring_problems
from .frontend.read import NetSource, describe, read_net
from .lowering.builder import SOURCE_TYPES, Built, build, support_problems
from .lowering.layers.python import refuse_unimportable, refuse_untrusted, trusted
from .lowering.registry import CaffeModule, auto_tops
from .passes.filter_phase import filter_phase
from .passes.insert_splits import insert_splits
from .passes.name_automatic_tops import name_automatic_tops
from .proto import caffe_pb2

__all__ = [
    "PASSES", "PROTO_PASSES", "Prepared", "in_step", "lower", "net_state", "pass_name",
    "prepare", "run_passes", "with_state",
]

NetPass = Callable[[caffe_pb2.NetParameter, str], caffe_pb2.NetParameter]
T = TypeVar("T")

CHECK_ENV = "CAFFE_FX_CHECK_PASSES"

PROTO_PASSES: tuple[NetPass, ...] = (filter_phase, insert_splits)
PASSES: tuple[NetPass, ...] = PROTO_PASSES + (
    functools.update_wrapper(functools.partial(name_automatic_tops, auto_tops=auto_tops),
                             name_automatic_tops),
)


def pass_name(p: Callable[..., Any]) -> str:
    return getattr(p, "__name__", None) or repr(p)


# --------------------------------------------------------------------------- NetState

def _phase(phase: str | int) -> int:
    if isinstance(phase, str):
        names = {"train": caffe_pb2.TRAIN, "test": caffe_pb2.TEST}
        if phase.lower() in names:
            return names[phase.lower()]
    elif phase in (caffe_pb2.TRAIN, caffe_pb2.TEST):
        return int(phase)
    raise InputError(f"phase = {phase!r} is not a phase; allowed: 'train', 'test' (or "
                     "Caffe's numbers, caffe.TRAIN = 0, caffe.TEST = 1)")


def names_problems(value: Any, what: str) -> list[str]:
    """Why `value`, given as `what=`, is not a list of names (a string would be read as
    its letters)."""
    if isinstance(value, (str, bytes)):
        return [f"{what}={value!r} is one string; allowed: a list of names, e.g. "
                f"{what}=[{value!r}]"]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        return [f"{what}={value!r}; allowed: a list of strings"]
    return []


def state_problems(level: Any, stages: Any) -> list[str]:
    """Why `level` and `stages` cannot go into a NetState (int32 level, string stages)."""
    problems = names_problems(stages, "stages")
    if isinstance(level, bool) or not isinstance(level, Integral) \
            or not -2 ** 31 <= level < 2 ** 31:
        problems.insert(0, f"level={level!r}; allowed: an int of 32 bits (NetState.level)")
    return problems


def net_state(phase: str | int, level: int = 0, stages: Sequence[str] = (),
              base: caffe_pb2.NetState | None = None) -> caffe_pb2.NetState:
    """Net::Net's NetState: `base` (the file's `state`) with phase and level set and
    `stages` appended to its stages."""
    problems = state_problems(level, stages)
    if problems:
        raise InputError("; ".join(problems))
    state = caffe_pb2.NetState()
    if base is not None:
        state.CopyFrom(base)
    state.phase = _phase(phase)
    state.level = level
    state.stage.extend(stages)
    return state


def with_state(net: caffe_pb2.NetParameter, phase: str | int, level: int = 0,
               stages: Sequence[str] = ()) -> caffe_pb2.NetParameter:
    """A copy of `net` whose `state` is net_state(phase, level, stages, net.state)."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    out.state.CopyFrom(net_state(phase, level, stages, net.state))
    return out


# --------------------------------------------------------------------------- running

def _checking() -> bool:
    return os.environ.get(CHECK_ENV, "") not in ("", "0")


def in_step(step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs); a caffe_fx error comes out as the same class with the step
    named, chained from the original; any other exception gets a note naming it."""
    try:
        return fn(*args, **kwargs)
    except CaffeFxError as e:
        raise with_message(e, f"{e} [in {step}]") from e
    except Exception as e:
        if hasattr(e, "add_note"):  # Python >= 3.11
            e.add_note(f"(in caffe_fx's {step})")
        raise


def run_passes(net: caffe_pb2.NetParameter, where: str = "<net>",
               passes: Sequence[NetPass] = PASSES) -> caffe_pb2.NetParameter:
    """The passes in order, each on the previous one's result."""
    check = _checking()
    for p in passes:
        name = pass_name(p)
        # Partial: a net may lack required fields (Clip's min/max) that a layer reports.
        # Partial: a net may lack required fields (Clip's min/max) that a layer reports.
        before = net.SerializePartialToString() if check else b""
        out = in_step(f"pass {name}", p, net, where)
        if check:
            check_pass(name, net, before, out)
        net = out
    return net


def check_pass(name: str, net: caffe_pb2.NetParameter, before: bytes,
               out: caffe_pb2.NetParameter) -> None:
    """What every pass must keep (STYLE.md: passes are pure); AssertionError naming the
    pass otherwise (a caffe_fx bug, not a user error)."""
    def fail(what: str) -> None:
        raise AssertionError(f"pass {name}: {what}")

    if not isinstance(out, caffe_pb2.NetParameter) or out is net:
        fail("must return a new NetParameter")
    if net.SerializePartialToString() != before:
        fail("modified its input")
    if out.state != net.state:
        fail("changed the NetState")
    # Dropping layers (filter_phase) may strand their readers: the net's own error, which
    # the wiring check reports; any other pass must keep a wired net wired.
    kept = {layer.name for layer in net.layer} <= {layer.name for layer in out.layer}
    if kept and _wired(net) and not _wired(out):
        fail("left a bottom that no earlier layer produces")


def _wired(net: caffe_pb2.NetParameter) -> bool:
    known: set[str] = set(net.input)
    for layer in net.layer:
        if any(b not in known for b in layer.bottom):
            return False
        known.update(layer.top)
    return True


def check_built(built: Built, graph: nx.DiGraph) -> None:
    """Every node holding a blob carries its shape, and the node of every blob's final
    version has the shape Lowering.blob_shapes records."""
    info = built.info
    nodes = {n.name: n for n in built.gm.graph.nodes}
    for node in nodes.values():
        if "caffe_blob" in node.meta and "shape" not in node.meta:
            raise AssertionError(f"build: node {node.name} has no meta['shape']")
    for blob, shape in info.blob_shapes.items():
        node = nodes.get(info.value_nodes.get(graph.graph["blobs"][blob], ""))
        if node is not None and node.meta.get("shape") != shape:
            raise AssertionError(f"build: node {node.name} of blob '{blob}' has shape "
                                 f"{node.meta.get('shape')}; blob_shapes says {shape}")


# --------------------------------------------------------------------------- the pipeline

@dataclass(frozen=True)
class Prepared:
    """A net through the NetParameter passes, and its layer DAG."""

    where: str  # how errors name the net
    source: caffe_pb2.NetParameter  # as read, with Net::Net's NetState
    proto: caffe_pb2.NetParameter  # after PASSES: what Net::ToProto writes
    net: caffe_pb2.NetParameter  # after every pass (top-less loss layers' tops named)
    graph: nx.DiGraph  # frontend/graph.py's DAG of `net`
    # Fields no schema knows (skipped when read); lower() reports them with the net's
    # other problems, in one error.
    problems: tuple[str, ...] = ()


def prepare(prototxt: NetSource, *, phase: str | int = "test", level: int = 0,
            stages: Sequence[str] = (), caffe_proto: str | os.PathLike | None = None,
            ) -> Prepared:
    """read_net -> with_state -> PASSES -> build_graph.  Fields no schema knows are kept
    in `problems` (lower() raises them with the rest); use the result only through lower()
    or after checking that `problems` is empty."""
    where = describe(prototxt)
    unknown: list[str] = []
    source = with_state(read_net(prototxt, caffe_proto, unknown=unknown), phase, level, stages)
    filtered = run_passes(source, where, PROTO_PASSES[:1])  # filter_phase
    miswired = wiring_problems(filtered, where)
    if miswired:  # said with what the layers' types and fields show besides
        raise together([*miswired, *support_problems(filtered.layer, where, unknown)], where)
    proto = run_passes(filtered, where, PROTO_PASSES[1:])
    net = run_passes(proto, where, PASSES[len(PROTO_PASSES):])
    graph = in_step("build_graph", build_graph, net, where, auto_tops=auto_tops)
    return Prepared(where, source, proto, net, graph, tuple(unknown))


def lower(prepared: Prepared, *, input_shapes: Mapping[str, Sequence[int]] | None = None,
          outputs: Sequence[str] | None = None,
          python_layers: dict[str, CaffeModule] | None = None) -> Built:
    """build on the prepared DAG (modules on the meta device, nothing allocated).
    `python_layers`: None refuses Python layers by name; a dict trusts them (they are
    imported and set up once each, kept in it across rebuilds)."""
    _malloc.tune()  # the nets built here run forwards: keep their activations mapped
    if python_layers is None:
        try:
            refuse_untrusted(prepared.net, prepared.where)
            untrusted = None
        except UnsupportedFieldError as e:  # reported with the net's other problems
            untrusted = str(e)
        built = in_step("build", build, prepared.graph, input_shapes=input_shapes,
                        outputs=outputs, read_problems=prepared.problems, untrusted=untrusted)
    else:
        with trusted(python_layers):
            in_step("build", refuse_unimportable, prepared.net, prepared.where)
            built = in_step("build", build, prepared.graph, input_shapes=input_shapes,
                            outputs=outputs, read_problems=prepared.problems)
    if _checking():
        check_built(built, prepared.graph)
    return built


def sources(prepared: Prepared) -> list[str]:
    """The tops that become the GraphModule's inputs (Input and data layers), in order."""
    return [top for layer in prepared.net.layer if layer.type in SOURCE_TYPES
            for top in layer.top]
