"""Nets rebuilt in caffe_fx.pycaffe from an oracle golden (prototxt, params, inputs).

Shared by the backward and Python-layer tests, whose goldens have the same layout:
`meta` (JSON with prototxt and phase), `param/<layer>/<i>`, `input/<blob>`, and
optionally `topdiff/<blob>` diffs set before backward.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import caffe_fx.pycaffe as caffe


def load_golden(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("meta"))), arrays


def net_from_golden(path: Path, tmp_path: Path) -> tuple[caffe.Net, dict, dict[str, np.ndarray]]:
    """The golden's net with Caffe's params, forward run on its inputs, top diffs set."""
    meta, g = load_golden(path)
    proto = tmp_path / f"{path.stem}.prototxt"
    proto.write_text(meta["prototxt"])
    phase = caffe.TRAIN if meta["phase"] == "train" else caffe.TEST
    net = caffe.Net(str(proto), phase)
    for layer, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            blob.data[...] = g[f"param/{layer}/{i}"]
    net.forward(**{k[len("input/"):]: v for k, v in g.items() if k.startswith("input/")})
    for k, v in g.items():
        if k.startswith("topdiff/"):
            net.blobs[k[len("topdiff/"):]].diff[...] = v
    return net, meta, g
