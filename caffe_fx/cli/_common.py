"""Arguments the `info`, `export`, `convert` and `draw` subcommands share.

`--input-shape BLOB=N,C,H,W` (repeatable), `--phase`, `--caffe-proto` and `--debug`
(and `--trust-python-layers` for the commands that run a net) accepted after the
subcommand as well as before it (the pycaffe tools, python/caffe/draw_net.py and
tools/caffe.cpp, take their options after the command too).
"""
from __future__ import annotations

import argparse


def input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`data=1,3,224,224` -> ("data", (1, 3, 224, 224)); argparse reports errors (exit 2),
    each saying what is wrong with the text."""
    blob, sep, dims = text.partition("=")
    example = "expected e.g. data=1,3,224,224"
    if not sep or not blob:
        raise argparse.ArgumentTypeError(f"{text!r} is not BLOB=DIMS; {example}")
    parts = [d.strip() for d in dims.replace("x", ",").split(",")]
    if not any(parts):
        raise argparse.ArgumentTypeError(f"{text!r} gives no dims for '{blob}'; {example}")
    shape = []
    for k, d in enumerate(parts):
        try:
            value = int(d)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: dim {k} = {d!r} is not an integer; {example}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(
                f"{text!r}: dim {k} = {value} is negative; allowed: 0 or more")
        shape.append(value)
    return blob, tuple(shape)


def add_net_arguments(p: argparse.ArgumentParser, *, weights: str | None) -> None:
    """NET.prototxt [WEIGHTS] --phase --input-shape --debug.  `weights`: None for no
    weights argument, "optional" or "required"."""
    p.add_argument("prototxt", metavar="NET.prototxt",
                   help="the net definition (any format Caffe reads: V0, V1 or V2)")
    if weights is not None:
        p.add_argument("weights", metavar="WEIGHTS", nargs="?" if weights == "optional" else None,
                       help="a .caffemodel or .caffemodel.h5 (binary, any legacy format)")
    p.add_argument("--phase", choices=("train", "test"), default="test",
                   help="which layers to keep, by Caffe's include/exclude rules "
                        "(default: test)")
    p.add_argument("--input-shape", type=input_shape, action="append", default=[],
                   metavar="BLOB=DIMS", dest="input_shape",
                   help="shape of an input blob, e.g. data=1,3,224,224 (repeatable); "
                        "overrides the Input layer's, required for data layers")
    add_caffe_proto(p)
    add_debug(p)


def add_trust_python_layers(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-python-layers", action="store_true", dest="trust_python_layers",
                   help="run the net's Python layers: import each python_param.module from "
                        "sys.path (PYTHONPATH), as `caffe` built WITH_PYTHON_LAYER does; "
                        "without it caffe-fx never runs code from a net")


def add_caffe_proto(p: argparse.ArgumentParser) -> None:
    p.add_argument("--caffe-proto", metavar="CAFFE.proto", default=None, dest="caffe_proto",
                   help="a fork's caffe.proto, for nets with fields that neither Caffe nor the "
                        "forks caffe-fx bundles define (needs grpcio-tools or protoc)")


def add_debug(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: when absent here, the top-level parser's value (`caffe-fx --debug ...`)
    # is kept instead of being reset to False by the subparser's default.
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the full traceback on errors")


def input_shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]] | None:
    shapes = dict(args.input_shape)
    return shapes or None
