"""caffe_fx.pycaffe's Net.backward matches real pycaffe's on every golden layer case.

Goldens: tools/make_layer_backward_goldens.py ran each single-layer net of
tests/golden/cases with `force_backward: true` and seeded top diffs through BVLC Caffe 1.0
(src/caffe/net.cpp BackwardFromTo, each layer's Backward_cpu) and kept every blob's data
and diff and every param's data and diff.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.golden.harness import relative_error
from tests.pycaffe.golden_nets import net_from_golden

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "layer_backward"
CASES = sorted(p.stem for p in GOLDEN.glob("*.npz"))
TOL = 1e-5


def check(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: shape {got.shape}, Caffe's {want.shape}"
    err = relative_error(got, want)
    assert err <= TOL, f"{what}: relative error {err:.3g} > {TOL}"


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_caffe(case: str, tmp_path: Path) -> None:
    net, meta, g = net_from_golden(GOLDEN / f"{case}.npz", tmp_path)
    net.backward()
    for name in meta["blobs"]:
        # an input's data is stored once, as input/<blob>, unless a layer changed it
        want = g[f"data/{name}"] if f"data/{name}" in g else g[f"input/{name}"]
        check(net.blobs[name].data, want, f"data of {name}")
        check(net.blobs[name].diff, g[f"diff/{name}"], f"diff of {name}")
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            # after/: the value forward left, where it moved it (BatchNorm's statistics)
            want = g.get(f"after/{layer}/{i}", g[f"param/{layer}/{i}"])
            check(blob.data, want, f"param {layer}/{i}")
            check(blob.diff, g[f"pdiff/{layer}/{i}"], f"param diff {layer}/{i}")


def test_goldens_are_present() -> None:
    assert len(CASES) >= 230
