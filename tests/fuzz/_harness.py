"""A seeded mutational fuzzer for everything compile() reads: prototxt text, NetParameter
structure, binary caffemodels and HDF5 caffemodels.

`python -m tests.fuzz._harness SEED N [KIND...]` starts one worker that imports caffe_fx
and torch once, then forks a child per case; each child runs under a memory cap
(RLIMIT_AS: the worker's address space + CAP_BYTES) and a time cap (SIGALRM), with the
element limits lowered (CAFFE_FX_MAX_BLOB_ELEMENTS / _NET_ELEMENTS) so that what compile
accepts fits the cap.  A case passes when compile() returns or raises a caffe_fx.errors
subclass other than the bare CaffeFxError; anything else (another exception, a crash, a
hang, running out of memory) is printed as one JSON line with the case's input, which
tests/fuzz/test_fuzz.py turns into a failure (and which belongs in tests/fuzz/regressions/).
"""
from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
import tempfile
import traceback
from pathlib import Path

CAP_BYTES = 1536 << 20
TIME_CAP_S = 10
KINDS = ("prototxt", "netparam", "caffemodel", "hdf5")

SEED_NETS = [
    """name: "tiny"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 stride: 1 group: 1
                            weight_filler { type: "xavier" } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
        lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layer { name: "fc" type: "InnerProduct" bottom: "norm1" top: "fc"
        inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
""",
    """name: "misc"
layer { name: "data" type: "Input" top: "data" top: "sel"
        input_param { shape { dim: 4 dim: 6 } shape { dim: 4 } } }
layer { name: "dummy" type: "DummyData" top: "dummy"
        dummy_data_param { shape { dim: 4 dim: 6 } data_filler { type: "constant" value: 1 } } }
layer { name: "p" type: "Parameter" top: "p" parameter_param { shape { dim: 4 dim: 6 } } }
layer { name: "sum" type: "Eltwise" bottom: "data" bottom: "dummy" top: "sum" }
layer { name: "bn" type: "BatchNorm" bottom: "sum" top: "bn" }
layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" scale_param { bias_term: true } }
layer { name: "red" type: "Reduction" bottom: "sc" top: "red" reduction_param { operation: MEAN axis: 1 } }
layer { name: "filt" type: "Filter" bottom: "p" bottom: "sel" top: "filt" }
layer { name: "sl" type: "Slice" bottom: "filt" top: "a" top: "b" slice_param { axis: 1 slice_point: 2 } }
layer { name: "cat" type: "Concat" bottom: "b" bottom: "a" top: "cat" }
layer { name: "rs" type: "Reshape" bottom: "cat" top: "rs" reshape_param { shape { dim: 0 dim: -1 dim: 2 } } }
layer { name: "silence" type: "Silence" bottom: "red" }
""",
]

INTERESTING = ["0", "-1", "1", "2", "3", "7", "65535", "2147483647", "-2147483648", "2147483648",
               "4294967295", "1000000000000", "9223372036854775807", "1e30", "-1e30", "nan",
               "inf", "0.5"]


def _mutate_text(rng: random.Random, text: str) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(lines))
        if op == 0:  # a number becomes an interesting one
            import re
            nums = list(re.finditer(r"-?\d+(\.\d+)?(e-?\d+)?", lines[i]))
            if nums:
                m = rng.choice(nums)
                lines[i] = lines[i][:m.start()] + rng.choice(INTERESTING) + lines[i][m.end():]
        elif op == 1:
            del lines[i]
            if not lines:
                lines = ["name: 'x'"]
        elif op == 2:
            lines.insert(i, lines[rng.randrange(len(lines))])
        elif op == 3:  # a random byte somewhere
            j = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:j] + chr(rng.choice([0, 7, 34, 39, 123, 125, 58, 0xff, 0x2028,
                                                    rng.randrange(32, 127)])) + lines[i][j:]
        elif op == 4:  # a name or type swapped for another layer's
            import re
            words = re.findall(r'"([^"]*)"', text)
            quoted = list(re.finditer(r'"([^"]*)"', lines[i]))
            if words and quoted:
                m = rng.choice(quoted)
                lines[i] = lines[i][:m.start()] + '"' + rng.choice(
                    words + ["_caffe_modules", "_code", "forward", "", "a/b", "1x1"]
                ) + '"' + lines[i][m.end():]
        elif op == 5:  # truncate
            lines = lines[: i + 1]
            lines[-1] = lines[-1][: rng.randrange(len(lines[-1]) + 1)]
        else:  # a field and value from a known-tricky list
            field = rng.choice(["group: 0", "stride: 0", "dilation: 0", "kernel_size: 0",
                                "pad: 100", "axis: 5", "axis: -9", "num_output: 0",
                                "local_size: 4", "kernel_size: 999999", "stride: 999999",
                                "operation: MEAN", "coeff: 0", "dim: 0", "dim: -3"])
            j = lines[i].rfind("}")
            if j >= 0:
                lines[i] = lines[i][:j] + " " + field + " " + lines[i][j:]
    return "\n".join(lines)


def _mutate_netparam(rng: random.Random, text: str):
    from google.protobuf import text_format

    from caffe_fx.lowering.registry import supported_layers
    from caffe_fx.proto import caffe_pb2

    net = text_format.Parse(text, caffe_pb2.NetParameter())
    for _ in range(rng.randint(1, 3)):
        layer = rng.choice(net.layer)
        op = rng.randrange(5)
        if op == 0:
            layer.type = rng.choice(supported_layers() + ["Input", "Nope"])
        elif op == 1 and layer.bottom:
            layer.bottom[rng.randrange(len(layer.bottom))] = rng.choice(
                [t for lay in net.layer for t in lay.top] or ["x"])
        elif op == 2:
            layer.top.append(rng.choice(["extra", layer.name, "data"]))
        elif op == 3 and len(net.layer) > 1:
            i = rng.randrange(len(net.layer))
            j = rng.randrange(len(net.layer))
            a, b = caffe_pb2.LayerParameter(), caffe_pb2.LayerParameter()
            a.CopyFrom(net.layer[i])
            b.CopyFrom(net.layer[j])
            net.layer[i].CopyFrom(b)
            net.layer[j].CopyFrom(a)
        else:  # a scalar field of one of its *_param messages set to an odd value
            params = [fd for fd, _ in layer.ListFields() if fd.name.endswith("_param")]
            if not params:
                continue
            msg = getattr(layer, rng.choice(params).name)
            fields = [fd for fd in msg.DESCRIPTOR.fields if fd.type != fd.TYPE_MESSAGE]
            if not fields:
                continue
            fd = rng.choice(fields)
            _set_odd(rng, msg, fd)
    return net


def _set_odd(rng: random.Random, msg, fd) -> None:
    T = fd.type
    ints = {fd.TYPE_INT32: (-2**31, 2**31 - 1), fd.TYPE_UINT32: (0, 2**32 - 1),
            fd.TYPE_INT64: (-2**63, 2**63 - 1), fd.TYPE_UINT64: (0, 2**64 - 1)}
    if T in ints:
        lo, hi = ints[T]
        value = rng.choice([lo, hi, 0, 1, -1 if lo < 0 else 2, 3, 1000000])
    elif T in (fd.TYPE_FLOAT, fd.TYPE_DOUBLE):
        value = rng.choice([0.0, -1.0, 1e30, float("nan"), float("inf"), 1e-30])
    elif T == fd.TYPE_BOOL:
        value = rng.random() < 0.5
    elif T == fd.TYPE_ENUM:
        value = rng.choice([v.number for v in fd.enum_type.values])
    elif T == fd.TYPE_STRING:
        value = rng.choice(["", "x", "/dev/zero", "a" * 1000])
    else:
        return
    if fd.is_repeated:
        getattr(msg, fd.name).append(value)
    else:
        setattr(msg, fd.name, value)


def _flip_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(4)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[i] = rng.choice([0, 0x7f, 0x80, 0xff])
        elif op == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        else:
            del b[rng.randrange(len(b) + 1):]
    return bytes(b)


def _weights_of(text: str, fmt: str, path: Path) -> None:
    import caffe_fx

    gm = caffe_fx.compile(text)
    caffe_fx.save_caffemodel(path, gm, text, format=fmt, force=True)


def _mutate_hdf5(rng: random.Random, src: Path, dst: Path) -> None:
    import h5py
    import numpy as np

    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "r+") as f:
        layers = list(f["data"])
        name = rng.choice(layers)
        op = rng.randrange(6)
        if op == 0:  # a layer's group becomes a dataset
            del f["data"][name]
            f["data"][name] = np.ones(3, np.float32)
        elif op == 1:  # a blob declared huge, stored in nothing
            g = f["data"][name]
            for k in list(g):
                del g[k]
            g.create_dataset("0", shape=(rng.choice([10**5, 2**16]), 10**5), dtype=np.float32)
        elif op == 2:  # tiny chunks
            g = f["data"][name]
            for k in list(g):
                del g[k]
            g.create_dataset("0", shape=(400, 400), dtype=np.float32, chunks=(1, 1))
        elif op == 3:  # a string dataset, a scalar, or an empty one
            g = f["data"][name]
            for k in list(g):
                del g[k]
            g["0"] = rng.choice([np.bytes_("abc"), np.float32(3), np.zeros((0,), np.float32)])
        elif op == 4:  # a dataset name that is no index
            g = f["data"][name]
            g["x"] = np.ones(2, np.float32)
        else:  # a blob of another shape
            g = f["data"][name]
            if "0" in g:
                shape = g["0"].shape
                del g["0"]
                g["0"] = np.ones(tuple(reversed(shape)) + (1,), np.float32)
    if rng.random() < 0.3:
        dst.write_bytes(_flip_bytes(rng, dst.read_bytes()))


def make_case(seed: int, index: int, kind: str, work: Path) -> dict:
    """The inputs of one case, written under `work`: {"prototxt": ..., "weights": ...}."""
    rng = random.Random(f"{seed}:{index}:{kind}")
    text = rng.choice(SEED_NETS)
    case: dict = {"kind": kind, "seed": seed, "index": index}
    if kind == "prototxt":
        case["prototxt"] = _mutate_text(rng, text)
    elif kind == "netparam":
        from google.protobuf import text_format

        case["prototxt"] = text_format.MessageToString(_mutate_netparam(rng, text))
    elif kind in ("caffemodel", "hdf5"):
        fmt = "binary" if kind == "caffemodel" else "hdf5"
        clean = work / f"clean{SEED_NETS.index(text)}.{fmt}"
        if not clean.exists():
            _weights_of(text, fmt, clean)
        path = work / f"case{index}.{kind}"
        if kind == "caffemodel":
            path.write_bytes(_flip_bytes(rng, clean.read_bytes()))
        else:
            _mutate_hdf5(rng, clean, path)
        case["prototxt"], case["weights"] = text, str(path)
    return case


def run_case(case: dict) -> None:
    """What one child does: compile the case's net (with its weights)."""
    import caffe_fx

    caffe_fx.compile(case["prototxt"], case.get("weights"))


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def _child(case: dict, w: int) -> None:
    from caffe_fx.errors import CaffeFxError

    os.environ["CAFFE_FX_MAX_BLOB_ELEMENTS"] = str(1 << 25)
    os.environ["CAFFE_FX_MAX_NET_ELEMENTS"] = str(1 << 26)
    limit = _vm_bytes() + CAP_BYTES
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.alarm(TIME_CAP_S)
    verdict: dict = {"ok": True}
    try:
        run_case(case)
    except CaffeFxError as e:
        if type(e) is CaffeFxError:
            verdict = {"ok": False, "error": "bare CaffeFxError", "message": str(e)[:500]}
    except BaseException as e:  # noqa: BLE001  (anything else is what the fuzzer hunts)
        verdict = {"ok": False, "error": type(e).__name__, "message": str(e)[:500],
                   "traceback": traceback.format_exc()[-1500:]}
    os.write(w, json.dumps(verdict).encode())
    os._exit(0)


def run(seed: int, n: int, kinds: tuple[str, ...] = KINDS, out=sys.stdout) -> int:
    """Runs n cases of each kind; prints each failing case as a JSON line; returns the
    number of failures."""
    import torch

    import caffe_fx  # imported once, before the forks

    torch.set_num_threads(1)
    for text in SEED_NETS:  # lazy imports (torch._dynamo for some meta ops) happen here,
        caffe_fx.compile(text)  # once, not in every child under its time cap
    failures = 0
    with tempfile.TemporaryDirectory(prefix="caffe_fx_fuzz_") as tmp:
        work = Path(tmp)
        for kind in kinds:
            for index in range(n):
                case = make_case(seed, index, kind, work)
                verdict = _run_forked(case)
                if not verdict.get("ok"):
                    failures += 1
                    if "weights" in case:
                        case["weights_bytes"] = Path(case["weights"]).read_bytes().hex()
                    print(json.dumps({**case, **verdict}), file=out, flush=True)
    return failures


def _run_forked(case: dict) -> dict:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _child(case, w)
        finally:
            os._exit(1)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if data:
        return json.loads(data)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        what = "time cap" if sig == signal.SIGALRM else signal.Signals(sig).name
        return {"ok": False, "error": f"killed ({what})"}
    return {"ok": False, "error": f"exited {os.WEXITSTATUS(status)} without a verdict"}


if __name__ == "__main__":
    args = sys.argv[1:]
    kinds = tuple(args[2:]) or KINDS
    sys.exit(1 if run(int(args[0]), int(args[1]), kinds) else 0)
