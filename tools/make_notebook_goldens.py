"""Writes tests/golden/notebooks/: what the notebook scripts compute under real pycaffe.

Runs each script of tests/pycaffe/notebooks/ (cases.py lists them) under BVLC pycaffe
1.0 in the reference chroot (`chroot /opt/caffe-ref python3`, Python 3.9).  The nets of
../shared/models and CaffeNet's weights (made by `caffe-oracle forward --randomize 7`)
are copied into the chroot for the run only, never into the repository; each script's
own small results .npz becomes tests/golden/notebooks/<name>.npz.

Developer tool, run by hand (as root):
    sudo python tools/make_notebook_goldens.py [--only NAME] [--force]
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from caffe_fx._atomic import atomic_write
from tests.nets.oracle import MODELS, ORACLE, oracle_unavailable
from tests.pycaffe.notebooks.cases import (
    CAFFENET_WEIGHTS,
    NOTEBOOKS,
    SCRATCH,
    SHARED_FILES,
    make_caffenet_weights,
)
from tools._chroot import chroot_workdir, run_in_chroot

GOLDEN = ROOT / "tests" / "golden" / "notebooks"


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", type=Path, default=Path("/opt/caffe-ref"),
                        help="the reference Caffe chroot")
    parser.add_argument("--only", default="", help="only the notebooks whose name has this")
    parser.add_argument("--force", action="store_true", help="overwrite existing goldens")
    args = parser.parse_args(argv)
    why = oracle_unavailable()
    if why:
        sys.exit(why)
    if not MODELS.is_dir():
        sys.exit(f"needs ../shared/models ({MODELS} is absent)")
    notebooks = [nb for nb in NOTEBOOKS if args.only in nb.name]

    with chroot_workdir(args.caffe_root, "notebooks_") as (work, inside):
        paths = {SCRATCH: f"{inside}/scratch"}
        (work / "scratch").mkdir()
        for key, rel in SHARED_FILES.items():
            shutil.copy(MODELS / rel, work / Path(rel).name)
            paths[key] = f"{inside}/{Path(rel).name}"
        if any(nb.needs_caffenet_weights for nb in notebooks):
            make_caffenet_weights(ORACLE, MODELS / SHARED_FILES["caffenet_deploy"],
                                  work / "caffenet.caffemodel")
            paths[CAFFENET_WEIGHTS] = f"{inside}/caffenet.caffemodel"
        for nb in notebooks:
            shutil.copy(nb.script, work / nb.script.name)
            run_in_chroot(args.caffe_root, f"{inside}/{nb.script.name}",
                          nb.argv(f"{inside}/{nb.name}.npz", paths))
            with atomic_write(GOLDEN / f"{nb.name}.npz", force=args.force) as f:
                f.write((work / f"{nb.name}.npz").read_bytes())
            print(f"wrote {nb.name}.npz ({(GOLDEN / f'{nb.name}.npz').stat().st_size} B)",
                  flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
