"""Compares caffe_fx with the goldens real Caffe wrote (tools/make_goldens.py)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import caffe_fx

LAYERS = Path(__file__).parent / "layers"


def cases_for(layer: str) -> list[Path]:
    """Golden files of one Caffe layer type, for pytest.mark.parametrize (ids = case)."""
    out = []
    for path in sorted(LAYERS.glob("*.npz")):
        with np.load(path) as rec:
            if str(rec["layer"]) == layer:
                out.append(path)
    return out


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def relative_error(ours: np.ndarray, caffe: np.ndarray) -> float:
    """max |ours - caffe| relative to the largest magnitude in Caffe's blob."""
    scale = float(np.abs(caffe).max()) if caffe.size else 0.0
    diff = np.abs(ours.astype(np.float64) - caffe.astype(np.float64))
    same_nonfinite = ~np.isfinite(caffe) & (ours == caffe)
    diff = np.where(same_nonfinite, 0.0, diff)
    return float(diff.max()) / max(scale, 1e-30) if diff.size else 0.0


def load_record(path: Path) -> dict[str, np.ndarray]:
    """A golden .npz as a dict (every array read, the file closed)."""
    with np.load(path) as f:
        return dict(f)


def assert_like_fork(ours: np.ndarray, caffe: np.ndarray, what: str, tol: float = 1e-5
                     ) -> None:
    """Same shape, and within `tol` of the fork's blob relative to its largest magnitude."""
    assert ours.shape == caffe.shape, f"{what}: shape {ours.shape}, Caffe's {caffe.shape}"
    err = relative_error(ours, caffe)
    assert err <= tol, f"{what} differs from the fork by {err:.3g} (relative)"


def golden_weights(rec: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """A record's `param/<layer>/<i>` arrays as {layer: [blob 0, blob 1, ...]}."""
    params: dict[str, list[tuple[int, np.ndarray]]] = {}
    for key in sorted(k for k in rec if k.startswith("param/")):
        _, layer, i = key.split("/")
        params.setdefault(layer, []).append((int(i), rec[key]))
    return {k: [a for _, a in sorted(v, key=lambda t: t[0])] for k, v in params.items()}


def golden_inputs(rec: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A record's `input/<blob>` arrays as tensors, by blob."""
    return {k[len("input/"):]: torch.from_numpy(v) for k, v in rec.items()
            if k.startswith("input/")}


def run_golden(path: Path, weights_dir: Path | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict]:
    """Compiles the case's net with Caffe's params and runs it on Caffe's inputs.
    Returns (ours, caffe's, meta) keyed by blob name.  Cases that stored Caffe's own
    caffemodel load it from a file in `weights_dir` (default: a temporary folder)."""
    rec = load_record(path)
    meta = json.loads(str(rec["meta"]))
    weights, inputs = golden_weights(rec), golden_inputs(rec)
    blobs = [b for b in meta["blobs"] if f"data/{b}" in rec]
    if "caffemodel" in rec:
        with tempfile.TemporaryDirectory(dir=weights_dir) as tmp:
            file = Path(tmp) / f"{path.stem}.caffemodel"
            file.write_bytes(rec["caffemodel"].tobytes())
            gm = caffe_fx.compile(str(rec["prototxt"]), weights=file,
                                  phase=str(rec["phase"]), outputs=blobs)
    else:
        gm = caffe_fx.compile(str(rec["prototxt"]), weights=weights, phase=str(rec["phase"]),
                              outputs=blobs)
    with torch.no_grad():
        out = gm(**inputs)
    ours = {b: out[b].detach().numpy() for b in blobs}
    caffe = {b: rec[f"data/{b}"] for b in blobs}
    skip = set(rec["random_blobs"].tolist()) if "random_blobs" in rec else set()
    for b in skip:
        ours.pop(b, None)
        caffe.pop(b, None)
    return ours, caffe, meta


def assert_matches(path: Path, tol: float = 1e-5) -> None:
    ours, caffe, _ = run_golden(path)
    for blob, expected in caffe.items():
        got = ours[blob]
        assert got.shape == expected.shape, \
            f"{path.stem}: blob '{blob}' has shape {got.shape}, Caffe's is {expected.shape}"
        err = relative_error(got, expected)
        assert err <= tol, f"{path.stem}: blob '{blob}' differs from Caffe by {err:.3g} (relative)"
