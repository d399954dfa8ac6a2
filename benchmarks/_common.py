"""What the benchmark scripts share: where the models and the oracle live, one call into
real Caffe (../shared/caffe-oracle), the forward nets with their cached random weights and
inputs, and the small formatting helpers of their tables.

Imports no torch: the scripts import caffe_fx before torch, so that libgomp runs with the
spin caffe_fx chooses for its users (caffe_fx/_threads.py); `wait_policy()` names it.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ORACLE = Path(os.environ.get("CAFFE_ORACLE",
                             ROOT.parent / "shared" / "caffe-oracle" / "caffe-oracle"))
MODELS = Path(os.environ.get("CAFFE_FX_MODELS", ROOT.parent / "shared" / "models"))

# The forward benchmark's nets (their prototxts as in tests/nets/catalog.py RANDOMIZED):
# --nets key -> (title, prototxt under MODELS).
FORWARD_NETS = {
    "alexnet": ("AlexNet", "BVLC+caffe/models/bvlc_alexnet/deploy.prototxt"),
    "googlenet": ("GoogLeNet", "BVLC+caffe/models/bvlc_googlenet/deploy.prototxt"),
    "resnet50": ("ResNet-50", "KaimingHe+deep-residual-networks/prototxt/ResNet-50-deploy.prototxt"),
    "mobilenet_v2": ("MobileNet v2", "shicai+MobileNet-Caffe/mobilenet_v2_deploy.prototxt"),
    "squeezenet_v1_1": ("SqueezeNet 1.1", "forresti+SqueezeNet/SqueezeNet_v1.1/deploy.prototxt"),
    "vgg16": ("VGG16", "davidgengenbach+vgg-caffe/model/VGG_ILSVRC_16_layers_deploy.prototxt"),
}


def oracle(*args: str) -> str:
    """`caffe-oracle ARGS`'s standard output; RuntimeError with its stderr's end on failure."""
    proc = subprocess.run([str(ORACLE), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"caffe-oracle {args[0]} failed:\n{proc.stderr[-1500:]}")
    return proc.stdout


def wait_policy(env: Mapping[str, str] = os.environ,
                unset: str = "libgomp's default wait policy") -> str:
    """libgomp's wait setting in `env` (this process's), for a table's header; `unset`
    where it holds none."""
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        if key in env:
            return f"{key}={env[key]}"
    return unset


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:160]


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


LOGITS_MAX = 8.0  # the largest logit magnitude calibrate() leaves
CALIBRATION = b"logits<=8"  # in the cache key: weights made before calibration differ


def calibrate(prototxt: Path, weights: Path, magnitudes: dict[str, float]) -> None:
    """Scales, in place, the layer feeding each output Softmax so that Caffe's logits
    reach at most LOGITS_MAX (see _calibrate.py: saturated random softmaxes make the
    parity check ill-conditioned)."""
    out = subprocess.run(
        [sys.executable, "-c", _FIND_SOFTMAX, str(prototxt)], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if out.returncode != 0:
        raise RuntimeError(f"finding {prototxt.name}'s softmax failed:\n{out.stderr[-2000:]}")
    for line in out.stdout.split("\n"):
        if not line.strip():
            continue
        layer, logits = line.split("\t")
        m = magnitudes.get(logits, 0.0)
        if m > LOGITS_MAX:
            subprocess.run([sys.executable, str(Path(__file__).with_name("_calibrate.py")),
                            str(prototxt), str(weights), str(weights), layer,
                            repr(LOGITS_MAX / m)], check=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))


# Prints "<layer>\t<blob>" for each Softmax whose top is an output: the layer writing the
# Softmax's bottom and that bottom.
_FIND_SOFTMAX = """
import sys
from caffe_fx.frontend.read import read_net
net = read_net(sys.argv[1])
writer, read = {}, set()
for layer in net.layer:
    read.update(layer.bottom)
    for top in layer.top:
        writer[top] = layer
for layer in net.layer:
    if layer.type == "Softmax" and layer.top[0] not in read:
        src = writer.get(layer.bottom[0])
        if src is not None and src.type in ("InnerProduct", "Convolution"):
            print(src.name + "\t" + layer.bottom[0])
"""


def prepare_net(key: str, prototxt: Path, workdir: Path) -> tuple[Path, dict]:
    """A caffemodel of well-scaled random weights (`--randomize 7`, the classifier then
    scaled by calibrate()) and the net's meta (inputs, outputs, blob shapes), made once by
    real Caffe and cached in `workdir`, keyed by a hash of the prototxt."""
    digest = hashlib.sha256(prototxt.read_bytes() + CALIBRATION).hexdigest()[:10]
    weights = workdir / f"{key}-{digest}.caffemodel"
    meta_path = workdir / f"{key}-{digest}.json"
    fresh = weights.exists() and meta_path.exists() and "outputs" in json.loads(
        meta_path.read_text())  # caches of older versions lack the outputs
    if not fresh:
        print(f"  making {weights.name} with caffe-oracle --randomize 7 ...", flush=True)
        record = workdir / f"{key}-{digest}.record.npz"
        partial = workdir / f"{key}-{digest}.partial.caffemodel"
        try:
            oracle("forward", str(prototxt), "--randomize", "7", "--save-weights",
                   str(partial), "--out", str(record))
            with np.load(record) as z:
                meta = json.loads(str(z["meta"]))
                record_logits = {b: float(np.abs(z[f"data/{b}"]).max())
                                 for b in meta["blobs"] if f"data/{b}" in z.files}
        finally:
            record.unlink(missing_ok=True)  # every blob and param: large, not needed
        calibrate(prototxt, partial, record_logits)
        meta_path.write_text(json.dumps({k: meta[k] for k in ("inputs", "outputs", "blobs")}))
        partial.replace(weights)
    return weights, json.loads(meta_path.read_text())


def make_inputs(key: str, meta: dict, batch: int, workdir: Path) -> tuple[Path, dict]:
    """`IN.npz` for a batch: N(0, 1) in the net's own C/H/W, seeded by the batch size."""
    r = np.random.RandomState(batch)
    arrays = {name: r.randn(batch, *meta["blobs"][name][1:]).astype(np.float32)
              for name in meta["inputs"]}
    path = workdir / f"{key}-b{batch}.npz"
    np.savez(path, **arrays)
    return path, arrays


def caffe_outputs(prototxt: Path, weights: Path, inputs: Path) -> dict[str, np.ndarray]:
    """Real Caffe's net outputs on `inputs` (`caffe-oracle forward`), cached beside them;
    the record of every blob is dropped."""
    cached = inputs.with_suffix(f".{weights.stem}.caffe-out.npz")
    if not cached.exists():
        record = inputs.with_suffix(".record.npz")
        try:
            oracle("forward", str(prototxt), "--weights", str(weights), "--inputs",
                   str(inputs), "--out", str(record))
            with np.load(record) as z:
                outs = {b: z[f"data/{b}"] for b in json.loads(str(z["meta"]))["outputs"]}
        finally:
            record.unlink(missing_ok=True)
        np.savez(cached, **outs)
    with np.load(cached) as z:
        return dict(z)


def max_rel_diff(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| over max |want|: the benchmarks' (and the suite's) parity measure."""
    if got.shape != want.shape:
        return float("inf")
    scale = float(np.abs(want).max()) if want.size else 0.0
    diff = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max()) if want.size else 0.0
    return diff / scale if scale else diff
