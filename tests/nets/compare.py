"""Compiles a published net and compares every blob with what real Caffe computed."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import fx

import caffe_fx
from caffe_fx.frontend.read import read_net
from caffe_fx.lowering.builder import SOURCE_TYPES
from caffe_fx.lowering.registry import lookup
from tests.golden.harness import relative_error

# Whole nets accumulate float32 rounding over many layers (and Caffe's OpenBLAS sums in
# another order), so they get 1e-4 relative to each blob's largest magnitude.
TOLERANCE = 1e-4


def compile_net(prototxt: str | Path, weights: str | Path | None, *,
                outputs: Sequence[str] | None = None,
                input_shapes: Mapping[str, Sequence[int]] | None = None) -> fx.GraphModule:
    """caffe_fx.compile; every net in the catalogue must compile (no skipping)."""
    return caffe_fx.compile(str(prototxt), None if weights is None else str(weights),
                            outputs=outputs, input_shapes=input_shapes)


def check_supported(prototxt: str | Path) -> None:
    """Fails fast, naming them, when the net has layer types caffe_fx lacks, before the
    oracle's expensive run."""
    net = read_net(str(prototxt))
    kinds = sorted({layer.type for layer in net.layer
                    if layer.type not in SOURCE_TYPES and lookup(layer.type) is None})
    if kinds:
        pytest.fail(f"caffe_fx does not support layer types: {', '.join(kinds)}")


def run(gm: fx.GraphModule, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = gm(**{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in inputs.items()})
    return {k: v.detach().numpy() for k, v in out.items()}


def assert_blobs_match(ours: Mapping[str, np.ndarray], caffe: Mapping[str, np.ndarray],
                       what: str, tol: float = TOLERANCE) -> None:
    """Every Caffe blob is in `ours`, of the same shape, within `tol`; lists all misfits."""
    bad = []
    for blob, expected in caffe.items():
        got = ours[blob]
        if got.shape != expected.shape:
            bad.append(f"blob '{blob}': shape {got.shape}, Caffe's {expected.shape}")
            continue
        err = relative_error(got, expected)
        if not err <= tol:
            bad.append(f"blob '{blob}': differs from Caffe by {err:.3g} (relative)")
    assert not bad, f"{what}: " + "; ".join(bad)
