"""`caffe-fx export NET.prototxt WEIGHTS -o out.{pt2,onnx,ts} [--compiled]`: a deployable program.

Compiles the net (caffe_fx/compiler.py) and writes it as a torch.export program (.pt2),
ONNX (.onnx, torch.onnx's dynamo exporter; needs the optional onnx and onnxscript
packages) or TorchScript (.ts); with --compiled, as an AOTInductor package (.pt2: the
torch.export program compiled ahead of time by Inductor into a shared library with the
weights inside, loaded by torch._inductor.aoti_load_package without compiling again).
Before the file gets its name, it is loaded back and run on a random input; it must
reproduce the GraphModule's outputs (max abs diff shown).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import atomic_path, check_writable
from ..errors import CaffeFxError, ExportError, InputError, MissingDependencyError
from ._common import add_net_arguments, input_shapes

if TYPE_CHECKING:
    import torch
    from torch import fx

# torch, numpy and the compiler are imported inside the functions that use them, so that
# `caffe-fx export --help` answers without them.

FORMATS = {".pt2": "torch.export", ".onnx": "ONNX", ".ts": "TorchScript"}
COMPILED = "AOTInductor"  # what --compiled writes, always a .pt2
# float32 programs that reorder or fuse ops may differ by rounding; more is a bug.
RTOL, ATOL = 1e-4, 1e-5


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="write a net as a torch.export (.pt2), ONNX (.onnx) or TorchScript "
                       "(.ts) program, checked against the GraphModule",
        description="Compile a Caffe net with its weights and write it as a torch.export "
                    "program (.pt2, torch.export.load), ONNX (.onnx; needs pip install "
                    "onnx onnxscript) or TorchScript (.ts, torch.jit.load), chosen by the "
                    "extension of -o.  The written file is loaded back and must reproduce "
                    "the compiled net's outputs on a random input before it is kept.  "
                    ".pt2 and .onnx programs are traced at the input shapes (the net's own, "
                    "or --input-shape).")
    add_net_arguments(p, weights="required")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="out.pt2, out.onnx or out.ts")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--compiled", action="store_true",
                   help="with -o OUT.pt2: write an AOTInductor package instead (the program "
                        "compiled to C++ kernels for this machine's CPU, weights inside; "
                        "load it with torch._inductor.aoti_load_package, no compile time "
                        "then); building it takes minutes and needs a C++ compiler (g++, "
                        "or $CXX)")
    p.add_argument("--outputs", metavar="BLOB1,BLOB2", type=_blob_list, default=None,
                   help="the blobs the program returns (Caffe's names; default: the net's "
                        "outputs); what they do not need is left out")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random check input (default: 0)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..compiler import compile

    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{out}: cannot tell the format from the extension '{suffix}'; "
                         f"allowed: {', '.join(FORMATS)}")
    if args.compiled and suffix != ".pt2":
        raise InputError(f"{out}: --compiled writes an AOTInductor package, a .pt2 file; "
                         f"got '{suffix}' (allowed with --compiled: .pt2)")
    check_writable(out, args.force)  # before the slow part
    if suffix == ".onnx":
        _require_onnx()
    if args.compiled:
        _require_cxx()
    from ..lowering.layers.python import UNTRUSTED_ADVICE

    token = UNTRUSTED_ADVICE.set(
        "which no exported program can hold (their code is Python and NumPy, outside "
        "torch); export a prototxt without them (Python layers run even where --outputs "
        "does not read them, as Caffe sets every layer up)")
    try:
        gm = compile(args.prototxt, args.weights, phase=args.phase,
                     input_shapes=input_shapes(args), outputs=args.outputs,
                     caffe_proto=args.caffe_proto)
    finally:
        UNTRUSTED_ADVICE.reset(token)
    inputs = random_inputs(gm, args.seed)
    with torch.no_grad():
        want = gm(**inputs)
    if not want:  # never write a program that computes nothing
        raise ExportError(f"{args.prototxt}: the net has no outputs to export; name the "
                          "blobs to return with --outputs BLOB1,BLOB2")
    if args.compiled:
        writer, what = _export_aoti, COMPILED
    else:
        writer = {".pt2": _export_pt2, ".onnx": _export_onnx, ".ts": _export_ts}[suffix]
        what = FORMATS[suffix]
    start = time.perf_counter()
    with atomic_path(out, force=args.force) as tmp:
        got = writer(gm, inputs, tmp)
        diffs = compare(got, want, what)
    worst = max(diffs.values(), default=0.0)
    built = f", built in {time.perf_counter() - start:.0f} s" if args.compiled else ""
    print(f"wrote {out} ({what}{built}); outputs {', '.join(diffs)} reproduced on a "
          f"random input, max abs diff {worst:.3g}")
    return 0


def random_inputs(gm: fx.GraphModule, seed: int) -> dict[str, torch.Tensor]:
    """One standard-normal tensor per input, keyed by the forward's argument names."""
    import torch

    shapes = gm.meta["caffe"].blob_shapes
    g = torch.Generator().manual_seed(seed)
    return {n.target: torch.randn(shapes[n.meta["caffe_blob"]], generator=g)
            for n in gm.graph.nodes if n.op == "placeholder"}


def compare(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor],
            what: str) -> dict[str, float]:
    """Max abs diff per output; raises ExportError when an output differs."""
    import torch

    if list(got) != list(want):
        raise ExportError(f"the {what} program returns {list(got)}; expected {list(want)}")
    diffs = {}
    for k, w in want.items():
        g, w = got[k].detach(), w.detach()
        if tuple(g.shape) != tuple(w.shape):
            raise ExportError(f"the {what} program gives output '{k}' the shape "
                              f"{list(g.shape)}; the compiled net gives {list(w.shape)}")
        diffs[k] = float((g.double() - w.double()).abs().max()) if w.numel() else 0.0
        if not torch.allclose(g.to(w.dtype), w, rtol=RTOL, atol=ATOL, equal_nan=True):
            raise ExportError(f"the {what} program does not reproduce output '{k}': max abs "
                              f"diff {diffs[k]:.3g} (allowed: rtol {RTOL}, atol {ATOL}); "
                              "nothing was written")
    return diffs


def _export_pt2(gm: fx.GraphModule, inputs: dict[str, torch.Tensor],
                path: Path) -> dict[str, torch.Tensor]:
    import torch

    ep = _guard("torch.export", lambda: _torch_export(gm, inputs))
    # Into memory, checked from there, then one write (see _write): torch's own file
    # writer aborts the process on a full disk.  (A buffer, not a name: torch.export
    # wants names ending in .pt2, and the temporary file's does not.)
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    with torch.no_grad():
        got = loaded.module()(**inputs)
    _write(path, buf)
    return got


def _write(path: Path, buf: io.BytesIO) -> None:
    """The serialized program as one plain write, whose OSError (a full disk) the atomic
    writer reports as a WriteError naming the file."""
    with open(path, "wb") as f:
        f.write(buf.getbuffer())


def _torch_export(gm: fx.GraphModule, inputs: dict[str, torch.Tensor]) -> Any:
    """torch.export.export; a failing trace prints its partial graph on stderr, before
    the error, which is one line (the error, or the exception with --debug, says more)."""
    import torch

    with contextlib.redirect_stderr(io.StringIO()):
        return torch.export.export(gm, (), inputs)


def _export_aoti(gm: fx.GraphModule, inputs: dict[str, torch.Tensor],
                 path: Path) -> dict[str, torch.Tensor]:
    """torch.export, then AOTInductor: the package at `path`, run as a user loads it."""
    import torch
    import torch._inductor

    # The same refusals as the plain .pt2 (data-dependent tops, Python layers), before
    # the slow part.
    ep = _guard("torch.export", lambda: _torch_export(gm, inputs))

    def build() -> None:
        # An open file: the package API wants a name ending in .pt2 otherwise, and the
        # temporary file's does not.
        with open(path, "wb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch._inductor.aoti_compile_and_package(ep, package_path=f)

    _guard(COMPILED, build, doing="compile")

    def load_and_run() -> dict[str, torch.Tensor]:
        with open(path, "rb") as f:
            package = torch._inductor.aoti_load_package(f)
        with torch.no_grad():
            return dict(package(**inputs))

    return _guard(COMPILED, load_and_run, doing="check (load and run)")


def _export_ts(gm: fx.GraphModule, inputs: dict[str, torch.Tensor],
               path: Path) -> dict[str, torch.Tensor]:
    import torch

    def script() -> torch.jit.ScriptModule:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.script(gm)

    scripted = _guard("TorchScript", script)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)  # into memory first, as _export_pt2
        buf.seek(0)
        loaded = torch.jit.load(buf)

    def check() -> dict[str, torch.Tensor]:
        # A layer that scripts but refuses to run there (DetectionOutput) raises here.
        with torch.no_grad():
            return dict(loaded(**inputs))

    got = _guard("TorchScript", check, doing="check (load and run)")
    _write(path, buf)
    return got


def _export_onnx(gm: fx.GraphModule, inputs: dict[str, torch.Tensor],
                 path: Path) -> dict[str, torch.Tensor]:
    import numpy as np
    import torch

    def run_exporter() -> None:
        # The exporter reports its progress on stdout; keep the command's output clean.
        log = logging.getLogger("torch.onnx")
        level = log.level
        log.setLevel(logging.ERROR)
        try:
            # A failing torch.export step prints its partial graph on stderr, as in
            # _torch_export.
            with contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(gm, (), str(path), kwargs=inputs, dynamo=True,
                                  external_data=False)
        finally:
            log.setLevel(level)

    _guard("ONNX", run_exporter)
    feed = {k: v.numpy() for k, v in inputs.items()}
    try:
        import onnxruntime  # optional: much faster than the reference evaluator
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        # The reference evaluator is slow and does not run every program (a top-k
        # Accuracy over 1000 classes fails inside numpy); say what to install.
        values = _guard("ONNX", lambda: ReferenceEvaluator(str(path)).run(None, feed),
                        doing="check with onnx's reference evaluator",
                        hint=" (onnxruntime is not installed; with pip install onnxruntime "
                             "it runs the check instead)")
    else:
        def run_session() -> list:
            session = onnxruntime.InferenceSession(str(path),
                                                   providers=["CPUExecutionProvider"])
            return session.run(None, feed)

        values = _guard("ONNX", run_session, doing="check with onnxruntime")
    names = list(gm.meta["caffe"].outputs)
    return {k: torch.from_numpy(np.asarray(v)) for k, v in zip(names, values)}


def _guard(what: str, fn: Callable, doing: str = "export", hint: str = ""):
    """fn(), with whatever the exporter or runtime raises (many types) as one ExportError
    line naming the step that failed; nothing is written then.  Where the failure began
    as a caffe_fx error inside the trace (a layer refusing export), that error's own
    message is the line, not the exporter's wrapper (torch.onnx's TorchExportError)."""
    try:
        return fn()
    except Exception as e:
        cause = _own_error(e)
        shown = e if cause is None else cause
        text = str(shown).strip()
        name = type(shown).__name__
        if cause is None and text.startswith("The following operation failed in the "
                                             "TorchScript interpreter"):
            # A RuntimeError raised inside TorchScript: its last line is that error.
            name, _, text = text.splitlines()[-1].removeprefix("builtins.").partition(": ")
        first = text.splitlines()[0].rstrip(".") if text else "no message"
        raise ExportError(f"{what} {doing} failed: {name}: {first}{hint}; "
                          "nothing was written") from e


def _own_error(e: BaseException) -> CaffeFxError | None:
    """The first caffe_fx error along e's chain of causes (`raise ... from`, or raised
    while handling), or None."""
    seen: set[int] = set()
    current: BaseException | None = e
    while current is not None and id(current) not in seen:
        if isinstance(current, CaffeFxError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _blob_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no blob; expected e.g. prob,fc7")
    return names


def _require_cxx() -> None:
    """AOTInductor compiles C++ with $CXX, else g++ (torch._inductor.config.cpp.cxx);
    without one it fails after the slow export, with a message about conda."""
    cxx = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    if shutil.which(cxx) is None:
        raise MissingDependencyError(
            f"--compiled builds the package with a C++ compiler, and '{cxx}' is not on PATH: "
            "install one (apt-get install g++) or name it in CXX")


def _require_onnx() -> None:
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(
            f"exporting to ONNX needs the {' and '.join(missing)} package"
            f"{'s' if len(missing) > 1 else ''}: pip install {' '.join(missing)} "
            "(or pip install 'caffe_fx[onnx]')")
