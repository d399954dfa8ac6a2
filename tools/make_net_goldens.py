"""Runs the published nets that have real weights through real Caffe and keeps the results.

    python tools/make_net_goldens.py [--only SUBSTRING]

Needs root, ../shared/caffe-oracle and ../shared/models.  Each net runs on its own
oracle (`fork`: CAFFE_ORACLE_FORK=ssd for the SSD fork's face detectors).  For each net of
tests/nets/catalog.py's WEIGHTED, writes tests/golden/nets/<name>.npz holding only
`input/<blob>` (what was fed, when small), `data/<blob>` (every blob after Caffe's forward, float32;
a big net keeps `stored_blobs` and its outputs) and `meta` (JSON: the oracle's meta plus
the net's paths under ../shared/models).  Never the prototxt or the weights: their
licences keep them out of this repository, and the tests read them from ../shared.
A net with a `photo` also gets <name>_photo.npz: its outputs on catalog.PHOTO (read from
../shared, fed as the detector's demo feeds it) and the input's sha256, never the pixels.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.nets.catalog import GOLDEN, WEIGHTED, PublishedNet  # noqa: E402
from tools._oracle_goldens import write_golden  # noqa: E402
from tests.nets.oracle import MODELS, oracle_fork, oracle_unavailable, run_oracle  # noqa: E402

SIZE_LIMIT = 2 * 1024 * 1024
INPUT_LIMIT = 64 * 1024  # elements


def _run(net: PublishedNet, inputs: dict[str, np.ndarray]) -> tuple[dict, dict]:
    with oracle_fork(net.fork), tempfile.TemporaryDirectory() as tmp:
        proto = Path(tmp) / "net.prototxt"
        proto.write_text(net.oracle_prototxt(MODELS))
        return run_oracle(proto, inputs, weights=MODELS / net.weights)


def input_digest(inputs: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(inputs):
        h.update(k.encode() + np.ascontiguousarray(inputs[k], np.float32).tobytes())
    return h.hexdigest()


def make_photo_golden(net: PublishedNet) -> str:
    inputs = net.photo_inputs(MODELS)
    data, meta = _run(net, inputs)
    record = {f"data/{b}": data[f"data/{b}"].astype(np.float32) for b in meta["outputs"]}
    meta.update(net=net.name, prototxt=net.prototxt, weights=net.weights,
                input_sha256=input_digest(inputs))
    record["meta"] = np.array(json.dumps(meta))
    return write_golden(GOLDEN, f"{net.name}_photo", record)


def make_golden(net: PublishedNet) -> str:
    inputs = net.make_inputs()
    data, meta = _run(net, inputs)
    # Splits of a replaced data layer's tops are named after the oracle's stand-in layer
    # (`label_input_1_split_0`, not `label_data_1_split_0`); they only copy the input.
    input_splits = {b for b in meta["blobs"] if net.data_layer_as_input
                    and any(b.startswith(f"{i}_") and "_split_" in b for i in meta["inputs"])}
    keep = [b for b in meta["blobs"] if b not in meta["inputs"] and b not in input_splits
            and (net.stored_blobs is None or b in net.stored_blobs or b in meta["outputs"])]
    # Big inputs are not kept: the test makes them again from the seed (RandomState's
    # stream is fixed across NumPy versions) and checks them against input_sha256.
    keep_inputs = sum(v.size for v in inputs.values()) <= INPUT_LIMIT
    record: dict[str, np.ndarray] = {f"input/{k}": v for k, v in inputs.items()
                                     if keep_inputs}
    record.update({f"data/{b}": data[f"data/{b}"].astype(np.float32) for b in keep})
    meta.update(net=net.name, prototxt=net.prototxt, weights=net.weights, stored_blobs=keep,
                input_sha256=input_digest(inputs),
                omitted_blobs=[b for b in meta["blobs"]
                               if b not in keep and b not in meta["inputs"]])
    record["meta"] = np.array(json.dumps(meta))
    GOLDEN.mkdir(parents=True, exist_ok=True)
    out = GOLDEN / f"{net.name}.npz"
    tmp_out = GOLDEN / f".{net.name}.npz.tmp"
    with open(tmp_out, "wb") as f:
        np.savez_compressed(f, **record)
    tmp_out.replace(out)
    size = out.stat().st_size
    note = f" (over {SIZE_LIMIT} B: set stored_blobs)" if size > SIZE_LIMIT else ""
    return f"{net.name}: ok, {len(keep)} blobs, {size} B{note}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    why = oracle_unavailable()
    if why:
        sys.exit(why)
    if not MODELS.exists():
        sys.exit(f"needs ../shared/models ({MODELS} is absent)")
    results, failed = [], False
    for net in WEIGHTED:
        if a.only not in net.name:
            continue
        for make in (make_golden, make_photo_golden) if net.photo else (make_golden,):
            try:
                results.append(make(net))
            except RuntimeError as e:
                failed = True
                results.append(f"{net.name}: {e}")
            print(results[-1], flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
