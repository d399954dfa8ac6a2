"""Pieces shared by the oracle golden generators (make_backward_goldens.py,
make_pylayer_goldens.py, the fork generators make_rcnn/ssd/segnet_goldens.py): prototxt
snippets, seeded inputs, the atomic .npz write, the command-line loop over cases, and
`ForkCase` + `make_fork_golden`, one layer (or a small net) of a Caffe fork run forward
and backward."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.oracle import oracle_fork, oracle_unavailable, run_oracle  # noqa: E402

Gen = Callable[[np.random.RandomState], np.ndarray]


def input_layer(name: str, *dims: int) -> str:
    shape = " ".join(f"dim: {d}" for d in dims)
    return (f'layer {{ name: "{name}" type: "Input" top: "{name}" '
            f'input_param {{ shape {{ {shape} }} }} }}\n')


def normal(*shape: int) -> Callable[[np.random.RandomState], np.ndarray]:
    return lambda r: r.randn(*shape).astype(np.float32)


def write_golden(folder: Path, name: str, record: dict[str, np.ndarray]) -> str:
    """Writes folder/<name>.npz through a temporary name; returns the report line."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}.npz"
    tmp_out = folder / f".{name}.npz.tmp"
    with open(tmp_out, "wb") as f:
        np.savez_compressed(f, **record)
    tmp_out.replace(out)
    return f"{name}: ok, {out.stat().st_size} B"


def generate(cases: Sequence[Any], make: Callable[[Any], str]) -> None:
    """`--only SUBSTRING` selects cases by name; exits 1 if any case failed."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    why = oracle_unavailable()
    if why:
        sys.exit(why)
    failed = False
    for case in cases:
        if a.only not in case.name:
            continue
        try:
            print(make(case), flush=True)
        except RuntimeError as e:
            failed = True
            print(f"{case.name}: {e}", flush=True)
    sys.exit(1 if failed else 0)


# ------------------------------------------------------------------ fork layer cases

@dataclass(frozen=True)
class ForkCase:
    """One golden case run on a fork's oracle (`CAFFE_ORACLE_FORK=fork`).

    The net is fed from legacy `input:` fields (the forks have no Input layer) with
    `force_backward: true`; `inputs` are seeded by the name, `topdiffs` seed the diffs of
    non-loss tops.  `body` is the one layer's text after its name and type; `net`, if
    given, is a whole net's layers instead."""

    name: str
    layer: str  # the layer type ("net" for a whole net)
    body: str
    inputs: Mapping[str, Gen]
    diff_of: tuple[str, ...] = ()  # the inputs Caffe differentiates
    topdiffs: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    phase: str = "test"
    net: str = ""
    fork: str = ""  # the generator's default when empty
    backward: bool = True  # False: forward only, no force_backward (layers without one)


def fork_prototxt(case: ForkCase, shapes: Mapping[str, tuple[int, ...]]) -> str:
    head = f'name: "{case.name}"\n' + ("force_backward: true\n" if case.backward else "")
    for blob, shape in shapes.items():
        dims = " ".join(f"dim: {d}" for d in shape)
        head += f'input: "{blob}"\ninput_shape {{ {dims} }}\n'
    if case.net:
        return head + case.net
    return head + f'layer {{ name: "{case.name}" type: "{case.layer}" {case.body} }}\n'


def case_seed(name: str) -> int:
    return sum(ord(c) * (i + 1) for i, c in enumerate(name)) % (2 ** 31)


def make_fork_golden(case: ForkCase, folder: Path, fork: str) -> str:
    """Runs the case on the fork (case.fork, else `fork`) and writes folder/<name>.npz:
    `prototxt`, `phase`, `layer`, `input/<blob>`, `topdiff/<blob>`, `data/<blob>` (every
    top but Split's copies), `diff/<blob>` (case.diff_of), `param/<layer>/<i>` and
    `pdiff/<layer>/<i>`."""
    r = np.random.RandomState(case_seed(case.name))
    inputs = {k: np.ascontiguousarray(g(r), dtype=np.float32) for k, g in case.inputs.items()}
    text = fork_prototxt(case, {k: v.shape for k, v in inputs.items()})
    diffs = {k: r.standard_normal(s).astype(np.float32) for k, s in case.topdiffs.items()}
    folder.mkdir(parents=True, exist_ok=True)
    net = folder / f".{case.name}.prototxt"
    net.write_text(text)
    try:
        with oracle_fork(case.fork or fork):
            got, meta = run_oracle(net, inputs, phase=case.phase, backward=case.backward,
                                   topdiffs=diffs, workdir=folder)
    finally:
        net.unlink()
    tops = [t for layer in meta["layers"] for t in layer["tops"]
            if "_split_" not in t and t not in inputs]
    record: dict[str, np.ndarray] = {
        "prototxt": np.array(text), "phase": np.array(case.phase), "layer": np.array(case.layer),
    }
    record.update({f"input/{k}": v for k, v in inputs.items()})
    record.update({f"topdiff/{k}": v for k, v in diffs.items()})
    record.update({f"data/{t}": got[f"data/{t}"] for t in tops})
    record.update({f"diff/{b}": got[f"diff/{b}"] for b in case.diff_of})
    record.update({k: v for k, v in got.items() if k.startswith(("param/", "pdiff/"))})
    return write_golden(folder, case.name, record)
