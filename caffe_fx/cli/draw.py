"""`caffe-fx draw NET.prototxt -o net.{dot,svg,png,pdf}`: the net as a graph.

Drawn as pycaffe's python/caffe/draw_net.py draws it (caffe_fx/drawing.py): layers as
coloured boxes, blobs as octagons, in-place layers on their blob.  DOT text needs
nothing else; svg/png/pdf go through Graphviz's `dot` binary.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._atomic import atomic_write
from ..errors import InputError
from ._common import add_caffe_proto, add_debug

TEXT_FORMATS = ("dot", "gv")
# drawing.RANKDIRS, spelled here so that --help does not import torch (a test checks).
RANKDIRS = ("LR", "TB", "BT", "RL")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "draw", help="draw a net's layers and blobs (DOT, or svg/png/pdf through Graphviz)",
        description="Draw a Caffe net as pycaffe's draw_net.py does.  The output format "
                    "follows the extension of -o: .dot/.gv (Graphviz text, no dependency), "
                    ".svg, .png or .pdf (needs Graphviz's `dot` binary).  -o - writes DOT "
                    "to standard output.")
    p.add_argument("prototxt", metavar="NET.prototxt", help="the net definition")
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="where to write: net.dot, net.svg, net.png, net.pdf, or - (stdout)")
    p.add_argument("--rankdir", choices=RANKDIRS, default="LR",
                   help="layout direction (default: LR, as draw_net.py)")
    p.add_argument("--phase", choices=("train", "test"), default=None,
                   help="draw only the layers of this phase (default: all layers)")
    p.add_argument("--no-edge-labels", dest="label_edges", action="store_false",
                   help="leave num_output / batch size off the edges")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    add_caffe_proto(p)
    add_debug(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..drawing import RENDERED_FORMATS, net_to_dot, render  # torch: not for --help

    out = args.output
    fmt = "dot" if out == "-" else Path(out).suffix.lower().lstrip(".")
    if fmt not in TEXT_FORMATS + RENDERED_FORMATS:
        raise InputError(
            f"{out}: cannot tell the format from the extension '.{fmt}'; allowed: "
            f"{', '.join('.' + f for f in TEXT_FORMATS + RENDERED_FORMATS)}")
    dot = net_to_dot(args.prototxt, phase=args.phase, rankdir=args.rankdir,
                     label_edges=args.label_edges, caffe_proto=args.caffe_proto)
    if out == "-":
        sys.stdout.write(dot)
        return 0
    data = dot.encode() if fmt in TEXT_FORMATS else render(dot, fmt)
    with atomic_write(out, force=args.force) as f:
        f.write(data)
    print(f"wrote {out}")
    return 0
