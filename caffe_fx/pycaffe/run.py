"""Runs a pycaffe script unchanged on caffe_fx: `import caffe` gives caffe_fx.pycaffe.

    python -m caffe_fx.pycaffe.run SCRIPT.py [ARGS...]
    python -m caffe_fx.pycaffe.run -m PACKAGE.MODULE [ARGS...]

pycaffe facade.  Installs the aliases of shim.py, then runs the script with runpy as
`python SCRIPT.py ARGS` would (sys.argv, sys.path[0], __name__ == "__main__").
"""
from __future__ import annotations

import os
import runpy
import sys

from .shim import install

USAGE = ("usage: python -m caffe_fx.pycaffe.run SCRIPT.py [ARGS...]\n"
         "       python -m caffe_fx.pycaffe.run -m MODULE [ARGS...]")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    if argv[0] == "-m":
        if len(argv) < 2:
            print(f"{USAGE}\nerror: -m needs a module name", file=sys.stderr)
            return 2
        install()
        sys.argv = [argv[1], *argv[2:]]  # runpy puts the module's path in argv[0]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return 0
    script = argv[0]
    if not os.path.isfile(script):
        print(f"{USAGE}\nerror: {script!r}: no such file", file=sys.stderr)
        return 2
    install()
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python SCRIPT` sets it
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
