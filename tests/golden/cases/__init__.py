"""Golden cases: small nets that real Caffe runs to produce tests/golden/layers/*.npz.

Each module here defines `CASES`, a list of `Case`.  tools/make_goldens.py runs each
through ../shared/caffe-oracle and writes one .npz per case; tests compare caffe_fx with
those files, so the suite runs without the oracle.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    """One golden case.

    name: unique, `<layer type>-<what it exercises>` in snake case, e.g. `pooling-ave_pad`.
    layer: the Caffe layer type under test (tests/layers/test_<layer>.py picks its cases).
    prototxt: a complete net in text format; inputs come from Input layers.
    inputs: {blob: shape}; values are drawn from N(0, 1) (see `low`/`high` to use U(low, high),
        `integers` for labels: U{0..integers-1}).
    randomize: fill learnable blobs with the oracle's --randomize (seeded); False keeps the
        prototxt's fillers (e.g. constant fillers written in the prototxt).
    phase: "test" or "train".
    random_blobs: blobs whose values are random in Caffe (Dropout in TRAIN), not compared.
    save_weights: also store the binary caffemodel Caffe saves (`net.save`), so that the
        test loads the weights from Caffe's own file instead of from the recorded arrays.
    """

    name: str
    layer: str
    prototxt: str
    inputs: dict[str, tuple[int, ...]]
    randomize: bool = True
    phase: str = "test"
    low: float | None = None
    high: float | None = None
    integers: dict[str, int] = field(default_factory=dict)
    random_blobs: tuple[str, ...] = ()
    save_weights: bool = False


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        cases.extend(module.CASES)
    names = [c.name for c in cases]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"duplicate golden case names: {sorted(dupes)}")
    return cases


def input_net(inputs: dict[str, tuple[int, ...]]) -> str:
    """An Input layer declaring `inputs`, to put in front of a case's layers."""
    tops = "".join(f'  top: "{b}"\n' for b in inputs)
    shapes = "  input_param {\n%s  }\n" % "".join(
        "    shape { %s }\n" % " ".join(f"dim: {d}" for d in s) for s in inputs.values())
    return 'layer {\n  name: "input"\n  type: "Input"\n%s%s}\n' % (tops, shapes)
