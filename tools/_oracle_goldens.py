"""Pieces shared by the oracle golden generators (make_backward_goldens.py,
make_pylayer_goldens.py): prototxt snippets, seeded inputs, the atomic .npz write and
the command-line loop over cases."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.oracle import oracle_unavailable  # noqa: E402


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
