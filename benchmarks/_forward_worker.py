"""One tool's forward runs of one net in a fresh process, for bench_forward.py.

    python benchmarks/_forward_worker.py '{"tool": "eager", "prototxt": ..., ...}'

Tools: `eager` (caffe_fx.compile()'s GraphModule), `inductor` (torch.compile of it, with
inductor's freezing), `onnxruntime` (caffe-fx export's .onnx) and `opencv`
(cv2.dnn.readNetFromCaffe on the prototxt and caffemodel); `export` writes the .onnx where
the `caffe-fx export` command refuses to.  Loads the net, runs `warmup`
untimed and up to `iters` timed forwards (at least 3, stopping after `budget` seconds),
writes the last outputs to `out` (npz) and prints one JSON line: the times, the load time,
the version and thread count it ran with, and its RSS right after its imports and, for
caffe_fx, a one-ReLU net's compile (the baseline of the peak the parent reads from wait4).  Imports only the standard library and
NumPy at the top: the OpenCV tool runs under another interpreter (CAFFE_FX_OPENCV_PYTHON).
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Runner = Callable[[], dict[str, np.ndarray]]


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def load_eager(spec: dict, inputs: dict[str, np.ndarray], info: dict) -> Callable[[], Runner]:
    sys.path.insert(0, spec["root"])
    import caffe_fx  # before torch: libgomp waits as caffe_fx sets it up for its users

    import torch

    torch.set_num_threads(spec["threads"])
    info.update(version=f"caffe_fx {caffe_fx.__version__}, torch {torch.__version__}",
                threads=torch.get_num_threads())
    # As Caffe's baseline is a process that ran a one-ReLU net: the imports the first
    # compile() makes (torch._dynamo, the lowering) belong to the baseline, not the net.
    with torch.no_grad():
        caffe_fx.compile(spec["tiny_net"])(data=torch.zeros(1, 1, 1, 1))
    if spec["tool"] == "inductor":
        import torch._inductor.config  # noqa: F401

    def load() -> Runner:
        gm = caffe_fx.compile(spec["prototxt"], spec["weights"],
                              input_shapes={k: v.shape for k, v in inputs.items()})
        fn = gm
        if spec["tool"] == "inductor":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True  # weights constant-folded, prepacked for oneDNN
            fn = torch.compile(gm)
        feed = {k: torch.from_numpy(v) for k, v in inputs.items()}

        def run() -> dict[str, np.ndarray]:
            with torch.no_grad():
                return {k: v.numpy() for k, v in fn(**feed).items()}
        return run
    return load


def load_onnxruntime(spec: dict, inputs: dict[str, np.ndarray],
                     info: dict) -> Callable[[], Runner]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = spec["threads"]
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    info.update(version=f"onnxruntime {ort.__version__}", threads=so.intra_op_num_threads)

    def load() -> Runner:
        sess = ort.InferenceSession(spec["onnx"], so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        feed = {i.name: inputs[i.name] for i in sess.get_inputs()}

        def run() -> dict[str, np.ndarray]:
            return dict(zip(names, sess.run(None, feed)))
        return run
    return load


def load_opencv(spec: dict, inputs: dict[str, np.ndarray], info: dict) -> Callable[[], Runner]:
    import cv2

    cv2.setNumThreads(spec["threads"])
    info.update(version=f"OpenCV {cv2.__version__}", threads=cv2.getNumThreads())
    want = spec.get("opencv_version")
    if want and not cv2.__version__.startswith(want):
        raise RuntimeError(f"cv2 {cv2.__version__} at {cv2.__file__}, not {want}: set "
                           "CAFFE_FX_OPENCV_PYTHON to an interpreter with "
                           f"opencv-python-headless=={want}.*")

    def load() -> Runner:
        net = cv2.dnn.readNetFromCaffe(spec["prototxt"], spec["weights"])
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        names = list(net.getUnconnectedOutLayersNames())

        def run() -> dict[str, np.ndarray]:
            for k, v in inputs.items():
                net.setInput(v, k)
            return dict(zip(names, net.forward(names)))
        return run
    return load


def export_onnx(spec: dict) -> dict:
    """What `caffe-fx export -o X.onnx` does (caffe_fx.cli.export._export_onnx: the dynamo
    exporter, then a run in onnxruntime), without the command's own comparison with the
    GraphModule: for nets the command refuses, so that the parent's check against Caffe
    says by how much the program is off."""
    import torch

    sys.path.insert(0, spec["root"])
    import caffe_fx
    from caffe_fx.cli.export import _export_onnx

    with np.load(spec["inputs"]) as z:
        shapes = {k: z[k].shape for k in z.files}
    gm = caffe_fx.compile(spec["prototxt"], spec["weights"], input_shapes=shapes)
    _export_onnx(gm, {k: torch.zeros(v) for k, v in shapes.items()}, Path(spec["onnx"]))
    return {"tool": "export", "onnx": spec["onnx"]}


LOADERS = {"eager": load_eager, "inductor": load_eager, "onnxruntime": load_onnxruntime,
           "opencv": load_opencv}


def main(spec: dict) -> dict:
    if spec["tool"] == "export":
        return export_onnx(spec)
    with np.load(spec["inputs"]) as z:
        inputs = {k: np.ascontiguousarray(z[k]) for k in z.files}
    info: dict = {"tool": spec["tool"]}
    load = LOADERS[spec["tool"]](spec, inputs, info)  # imports the tool
    info["baseline_rss_mb"] = rss_mb()
    t0 = time.perf_counter()
    run = load()
    info["load_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = run()  # torch.compile compiles here
    info["first_s"] = time.perf_counter() - t0
    for _ in range(spec["warmup"] - 1):
        out = run()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < spec["iters"] and (
            len(times) < min(3, spec["iters"]) or time.perf_counter() - started < spec["budget"]):
        t0 = time.perf_counter()
        out = run()
        times.append((time.perf_counter() - t0) * 1000.0)
    info["times_ms"] = times
    info["self_peak_rss_mb"] = rss_mb("VmHWM")
    np.savez(spec["out"], **{f"{i}:{k}": v for i, (k, v) in enumerate(out.items())})
    return info


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))), flush=True)
