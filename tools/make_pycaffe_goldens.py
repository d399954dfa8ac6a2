"""Writes tests/golden/pycaffe_net/: what real pycaffe 1.0's Net does with our scripts.

Runs tests/pycaffe/net_scripts.py under BVLC pycaffe in the reference chroot
(`chroot /opt/caffe-ref python3`, Python 3.9) for its own small nets and for LeNet from
../shared/models (prototxt and caffemodel copied into the chroot for the run only, never
into the repository), and records per net:

  <net>.json   names, types, shapes, inputs/outputs, top/bottom names, loss weights,
               the keys each forward returned
  <net>.npz    every blob's data after each step

Developer tool, run by hand (as root):
    sudo python tools/make_pycaffe_goldens.py [--force]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np

from caffe_fx._atomic import atomic_write
from tools._chroot import chroot_workdir, run_in_chroot

SCRIPTS = ROOT / "tests" / "pycaffe" / "net_scripts.py"
GOLDEN = ROOT / "tests" / "golden" / "pycaffe_net"
LENET = ROOT.parent / "shared" / "models" / "ethereon+caffe-tensorflow" / "examples" / "mnist"

# Runs inside the chroot: nets.json names (net -> [prototxt, weights or None]).
RUNNER = '''\
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import numpy as np
import caffe
import net_scripts
nets = json.load(open(os.path.join(here, "nets.json")))
for name, (proto, weights) in nets.items():
    meta, arrays = net_scripts.run(caffe, os.path.join(here, proto),
                                   weights and os.path.join(here, weights),
                                   net_scripts.RANGES[name], net_scripts.BATCHES[name])
    json.dump(meta, open(os.path.join(here, name + ".json"), "w"), indent=1, sort_keys=True)
    np.savez_compressed(os.path.join(here, name + ".npz"), **arrays)
'''


def run_real_pycaffe(caffe_root: Path, work_names: list[str]) -> dict[str, tuple[dict, dict]]:
    sys.path.insert(0, str(SCRIPTS.parent))
    import net_scripts

    with chroot_workdir(caffe_root, "pycaffe_net_") as (work, inside):
        shutil.copy(SCRIPTS, work / SCRIPTS.name)
        (work / "runner.py").write_text(RUNNER)
        nets: dict[str, list] = {}
        for name in work_names:
            if name == "lenet":
                shutil.copy(LENET / "lenet.prototxt", work / "lenet.prototxt")
                shutil.copy(LENET / "lenet_iter_10000.caffemodel", work / "lenet.caffemodel")
                nets[name] = ["lenet.prototxt", "lenet.caffemodel"]
            else:
                (work / f"{name}.prototxt").write_text(net_scripts.NETS[name])
                nets[name] = [f"{name}.prototxt", None]
        (work / "nets.json").write_text(json.dumps(nets))
        run_in_chroot(caffe_root, f"{inside}/runner.py")
        out = {}
        for name in nets:
            meta = json.loads((work / f"{name}.json").read_text())
            with np.load(work / f"{name}.npz") as z:
                out[name] = (meta, {k: z[k] for k in z.files})
        return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", type=Path, default=Path("/opt/caffe-ref"),
                        help="the reference Caffe chroot")
    parser.add_argument("--force", action="store_true", help="overwrite existing goldens")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(SCRIPTS.parent))
    import net_scripts

    names = sorted(net_scripts.NETS)
    if LENET.is_dir():
        names.append("lenet")
    else:
        print(f"skipping lenet: {LENET} is absent")
    for name, (meta, arrays) in run_real_pycaffe(args.caffe_root, names).items():
        with atomic_write(GOLDEN / f"{name}.json", force=args.force, text=True) as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.write("\n")
        with atomic_write(GOLDEN / f"{name}.npz", force=args.force) as f:
            np.savez_compressed(f, **arrays)
        print(f"wrote {name}.json, {name}.npz")


if __name__ == "__main__":
    main(sys.argv[1:])
