"""Writes tests/golden/upgrade/: what real Caffe makes of legacy net definitions.

Runs BVLC Caffe 1.0's own upgrade tools (../shared/caffe-oracle, as root) on the
legacy BVLC example nets in ../shared/models (BSD, so their upgraded text may be
committed) and on the hand-written cases in tests/frontend/legacy/, and records:

  <case>.prototxt   Caffe's upgraded text (upgrade_net_proto_text)
  cases.json        per case: its input, and whether Caffe succeeded, logged problems
                    but wrote the file anyway, aborted (LOG(FATAL)/CHECK) or crashed,
                    with Caffe's error lines
  <model>.json      for a legacy binary caffemodel: Caffe's upgraded binary
                    (upgrade_net_proto_binary) with blob data replaced by SHA-256
                    digests, and the layer names/types/parameter shapes Caffe's Net
                    reports once it has loaded the weights; no weights are stored

Developer tool, run by hand when a case is added:  sudo python tools/make_upgrade_goldens.py
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from google.protobuf import text_format

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from caffe_fx.proto import caffe_pb2  # noqa: E402

LEGACY = ROOT / "tests" / "frontend" / "legacy"
GOLDEN = ROOT / "tests" / "golden" / "upgrade"

# Legacy-format nets from BVLC/caffe itself (BSD-2-Clause), relative to shared/models.
BVLC_NETS: tuple[str, ...] = (
    "BVLC+caffe@v0.9/models/imagenet.prototxt",
    "BVLC+caffe@v0.9/examples/imagenet/imagenet_train.prototxt",
    "BVLC+caffe@v0.9/examples/imagenet/imagenet_val.prototxt",
    "BVLC+caffe@v0.9/examples/lenet/lenet.prototxt",
    "BVLC+caffe@v0.9/examples/lenet/lenet_train.prototxt",
    "BVLC+caffe@v0.9/examples/lenet/lenet_test.prototxt",
    "BVLC+caffe@rc/examples/cifar10/cifar10_full.prototxt",
    "BVLC+caffe@rc/examples/cifar10/cifar10_full_train_test.prototxt",
    "BVLC+caffe@rc/examples/cifar10/cifar10_quick.prototxt",
    "BVLC+caffe@rc/examples/cifar10/cifar10_quick_train_test.prototxt",
    "BVLC+caffe@rc/examples/feature_extraction/imagenet_val.prototxt",
    "BVLC+caffe@rc/examples/finetune_pascal_detection/pascal_finetune_train.prototxt",
    "BVLC+caffe@rc/examples/finetune_pascal_detection/pascal_finetune_val.prototxt",
    "BVLC+caffe@rc/examples/hdf5_classification/train_val.prototxt",
    "BVLC+caffe@rc/examples/hdf5_classification/train_val2.prototxt",
    "BVLC+caffe@rc/examples/imagenet/bvlc_caffenet_full_conv.prototxt",
    "BVLC+caffe@rc/examples/mnist/lenet.prototxt",
    "BVLC+caffe@rc/examples/mnist/lenet_train_test.prototxt",
    "BVLC+caffe@rc/examples/mnist/mnist_autoencoder.prototxt",
    "BVLC+caffe@rc/examples/siamese/mnist_siamese.prototxt",
    "BVLC+caffe@rc/examples/siamese/mnist_siamese_train_test.prototxt",
    "BVLC+caffe@rc/models/bvlc_alexnet/deploy.prototxt",
    "BVLC+caffe@rc/models/bvlc_alexnet/train_val.prototxt",
    "BVLC+caffe@rc/models/bvlc_reference_caffenet/deploy.prototxt",
    "BVLC+caffe@rc/models/bvlc_reference_caffenet/train_val.prototxt",
    "BVLC+caffe@rc/models/bvlc_reference_rcnn_ilsvrc13/deploy.prototxt",
    "BVLC+caffe@rc/models/finetune_flickr_style/train_val.prototxt",
)

# Legacy (V1) binary caffemodels: (weights, a prototxt whose layer names match them).
# Only facts about them are stored, never the weights.
BINARY_MODELS: tuple[tuple[str, str], ...] = (
    ("ikkiChung+Prediction-Example-With-Caffe/examples/cifar10/cifar10_quick_iter_5000.caffemodel",
     "BVLC+caffe@rc/examples/cifar10/cifar10_quick.prototxt"),
)

_GLOG_LINE = re.compile(r"^([EF])\d{4} [\d:.]+\s+\d+ [\w.]+:\d+\] (.*)$")


def bvlc_case_name(relpath: str) -> str:
    """'BVLC+caffe@rc/models/bvlc_alexnet/deploy.prototxt' -> 'bvlc_rc_bvlc_alexnet_deploy'."""
    path = Path(relpath)
    ref = path.parts[0].split("@")[1]
    return f"bvlc_{ref}_{path.parent.name}_{path.stem}"


def caffe_messages(stderr: str) -> list[str]:
    """Caffe's own ERROR and FATAL lines, without glog's time/thread/file prefix."""
    lines = []
    for line in stderr.splitlines():
        match = _GLOG_LINE.match(line.strip())
        if match:
            lines.append(f"{match.group(1)}: {match.group(2)}")
    return lines


def run_oracle_upgrade(oracle: Path, net: Path, out: Path, attempts: int = 3) -> dict:
    """Runs Caffe's upgrade_net_proto_text; returns the outcome (text in `out` if any)."""
    for _ in range(attempts):
        proc = subprocess.run(
            [str(oracle), "upgrade", str(net), str(out)], capture_output=True, text=True,
            check=False,
        )
        # Seen once: exit status 0 but no output file (the oracle's bind mounts are
        # shared with other users of the chroot); a second run is reliable.
        if proc.returncode != 0 or out.exists():
            break
    else:
        raise RuntimeError(f"caffe-oracle wrote no output for {net}:\n{proc.stderr}")
    stderr = proc.stderr
    if proc.returncode == 0:
        status = "ok"
    elif "SIGABRT" in stderr:
        status = "fatal"  # LOG(FATAL) or a failed CHECK
    elif "died with" in stderr:
        status = "crash"  # e.g. SIGSEGV: Caffe read past the end of a repeated field
    elif "returned non-zero exit status 1" in stderr and out.exists():
        # upgrade_net_proto_text exits 1 when UpgradeNetAsNeeded reported problems,
        # but has written the upgraded net all the same; Caffe's readers use it too.
        status = "warnings"
    else:
        raise RuntimeError(f"caffe-oracle failed on {net}:\n{stderr}")
    return {"status": status, "messages": caffe_messages(stderr)}


def write_text_cases(oracle: Path, models: Path) -> dict:
    cases: dict[str, dict] = {}
    inputs: list[tuple[str, str, Path]] = [
        (bvlc_case_name(rel), "shared", models / rel) for rel in BVLC_NETS
    ]
    inputs += [(p.stem, "repo", p) for p in sorted(LEGACY.glob("*.prototxt"))]
    inputs += [(f"error_{p.stem}", "repo", p)
               for p in sorted((LEGACY / "errors").glob("*.prototxt"))]
    with tempfile.TemporaryDirectory() as tmp:
        for name, root, path in inputs:
            out = Path(tmp) / f"{name}.prototxt"
            outcome = run_oracle_upgrade(oracle, path, out)
            relative = path.relative_to(models.parent if root == "shared" else ROOT)
            outcome["messages"] = [m.replace(str(path), relative.as_posix())
                                   for m in outcome["messages"]]
            cases[name] = {"root": root, "input": relative.as_posix(), "caffe": outcome}
            golden = GOLDEN / f"{name}.prototxt"
            if outcome["status"] in ("ok", "warnings") and not name.startswith("error_"):
                shutil.copyfile(out, golden)
            elif golden.exists():
                golden.unlink()
            print(f"{name:48s} {outcome['status']}")
    return cases


def caffe_binary_upgrade(caffe_root: Path, model: Path) -> bytes:
    """Caffe's upgrade_net_proto_binary on `model` (the oracle only wraps the text tool)."""
    with tempfile.TemporaryDirectory(dir=caffe_root / "tmp") as tmp:
        inside = Path("/tmp") / Path(tmp).name
        shutil.copyfile(model, Path(tmp) / "in.caffemodel")
        subprocess.run(
            ["chroot", str(caffe_root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin",
             "GLOG_logtostderr=1", "GLOG_minloglevel=2", "upgrade_net_proto_binary",
             str(inside / "in.caffemodel"), str(inside / "out.caffemodel")],
            check=True,
        )
        return (Path(tmp) / "out.caffemodel").read_bytes()


def blob_digest(blob: caffe_pb2.BlobProto) -> str:
    values = np.asarray(blob.double_data if len(blob.double_data) else blob.data,
                        dtype=np.float64 if len(blob.double_data) else np.float32)
    return hashlib.sha256(values.tobytes()).hexdigest()


def strip_blob_data(net: caffe_pb2.NetParameter) -> dict[str, list[str]]:
    """Clears every blob's values in place; returns their digests per layer name."""
    digests: dict[str, list[str]] = {}
    for layer in list(net.layer) + list(net.layers):
        if len(layer.blobs):
            digests[layer.name] = [blob_digest(blob) for blob in layer.blobs]
        for blob in layer.blobs:
            for field in ("data", "diff", "double_data", "double_diff"):
                blob.ClearField(field)
    return digests


def write_binary_case(oracle: Path, caffe_root: Path, models: Path, weights: str, net: str) -> None:
    model = models / weights
    upgraded = caffe_pb2.NetParameter()
    upgraded.ParseFromString(caffe_binary_upgrade(caffe_root, model))
    digests = strip_blob_data(upgraded)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "forward.npz"
        subprocess.run(
            [str(oracle), "forward", str(models / net), "--weights", str(model), "--out", str(out)],
            check=True, capture_output=True,
        )
        result = np.load(out)
        meta = json.loads(str(result["meta"]))
        caffe_net = [
            {
                "name": layer["name"],
                "type": layer["type"],
                "param_shapes": [list(result[f"param/{layer['name']}/{i}"].shape)
                                 for i in range(layer["nparams"])],
            }
            for layer in meta["layers"]
        ]
    facts = {
        "weights": weights,
        "weights_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "caffe_upgraded_without_data": text_format.MessageToString(upgraded),
        "caffe_blob_sha256": digests,
        "caffe_net": {"prototxt": net, "layers": caffe_net},
    }
    path = GOLDEN / f"{Path(weights).stem}.json"
    path.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"{path.name:48s} {len(digests)} layers with blobs")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--caffe-root", type=Path,
                        default=Path(os.environ.get("CAFFE_ROOT", "/opt/caffe-ref")))
    args = parser.parse_args(argv)
    oracle = args.shared / "caffe-oracle" / "caffe-oracle"
    models = args.shared / "models"
    GOLDEN.mkdir(parents=True, exist_ok=True)
    cases = write_text_cases(oracle, models)
    (GOLDEN / "cases.json").write_text(json.dumps(cases, indent=1, sort_keys=True) + "\n")
    for weights, net in BINARY_MODELS:
        write_binary_case(oracle, args.caffe_root, models, weights, net)


if __name__ == "__main__":
    main(sys.argv[1:])
