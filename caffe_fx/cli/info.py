"""`caffe-fx info NET.prototxt [WEIGHTS]`: a torchinfo-like table of a Caffe net.

One row per Caffe layer in Caffe's order (implicit Split layers marked), with bottoms ->
tops, output shapes as Net::Init (src/caffe/net.cpp) gives them, parameter counts as
net.params holds them, FLOPs and totals.  The table itself is caffe_fx/summary.py.
"""
from __future__ import annotations

import argparse

from ._common import add_net_arguments, add_trust_python_layers, input_shapes


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info", help="print a table of a net's layers, shapes, parameters and FLOPs",
        description="Print a table of a Caffe net's layers (implicit Split layers "
                    "included): bottoms -> tops, output shapes, parameter counts, FLOPs "
                    "and totals.  With WEIGHTS, also check that they fit the net.")
    add_net_arguments(p, weights="optional")
    add_trust_python_layers(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..summary import format_table, summarize  # torch: not needed for --help

    shapes = input_shapes(args)
    trust = args.trust_python_layers
    summary = summarize(args.prototxt, phase=args.phase, input_shapes=shapes,
                        caffe_proto=args.caffe_proto, trust_python_layers=trust)
    if args.weights is not None:  # checked before the table: an error comes alone
        from ..compiler import compile
        from ..frontend.read import read_stored

        # compile() copies every matching layer's blobs and raises if one does not fit.
        compile(args.prototxt, args.weights, phase=args.phase, input_shapes=shapes,
                caffe_proto=args.caffe_proto, trust_python_layers=trust)
        stored = read_stored(args.weights).layers
    print(format_table(summary))
    if args.weights is not None:
        with_blobs = [r.name for r in summary.rows if r.params]
        found = [n for n in with_blobs if n in stored]
        print(f"Weights: {args.weights}: {len(found)} of {len(with_blobs)} layers with "
              f"parameters filled from it; every one fits the net")
        missing = [n for n in with_blobs if n not in stored]
        if missing:
            print(f"  not in the weights (Caffe's fillers): {', '.join(missing)}")
    return 0
