"""Writes tests/golden/net_spec/: what real pycaffe 1.0's net_spec makes of our scripts.

Runs every script in tests/pycaffe/net_spec_scripts.py under BVLC pycaffe in the
reference chroot (`chroot /opt/caffe-ref python3`, Python 3.9, protobuf 3.12) and records:

  <script>.prototxt   str(NetParameter) as real pycaffe prints it
  errors.json         for scripts named error_*: the exception class and message
  param_names.json    caffe.net_spec.param_name_dict(): layer type -> param field stem

Developer tool, run by hand (as root) when a script is added:
    sudo python tools/make_net_spec_goldens.py [--force]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from caffe_fx._atomic import atomic_write
from tools._chroot import chroot_workdir, run_in_chroot

SCRIPTS = ROOT / "tests" / "pycaffe" / "net_spec_scripts.py"
GOLDEN = ROOT / "tests" / "golden" / "net_spec"

# Runs inside the chroot: imports the scripts beside it, writes results.json there.
RUNNER = '''\
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
import caffe
import caffe.coord_map
from caffe import net_spec
import net_spec_scripts
results = {"param_names": net_spec.param_name_dict(), "scripts": {}}
for name, script in net_spec_scripts.SCRIPTS.items():
    try:
        results["scripts"][name] = {"text": str(script(caffe))}
    except Exception as e:
        results["scripts"][name] = {"exception": type(e).__name__, "message": str(e)}
with open(os.path.join(here, "results.json"), "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
'''


def run_real_pycaffe(caffe_root: Path) -> dict:
    """Runs the scripts under real pycaffe; returns {"param_names", "scripts"}."""
    with chroot_workdir(caffe_root, "net_spec_") as (work, inside):
        shutil.copy(SCRIPTS, work / SCRIPTS.name)
        (work / "runner.py").write_text(RUNNER)
        run_in_chroot(caffe_root, f"{inside}/runner.py")
        return json.loads((work / "results.json").read_text())


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", type=Path, default=Path("/opt/caffe-ref"),
                        help="the reference Caffe chroot")
    parser.add_argument("--force", action="store_true", help="overwrite existing goldens")
    args = parser.parse_args(argv)

    results = run_real_pycaffe(args.caffe_root)
    errors = {}
    for name, outcome in sorted(results["scripts"].items()):
        if name.startswith("error_") != ("exception" in outcome):
            raise RuntimeError(f"script {name}: real pycaffe gave {outcome}")
        if "exception" in outcome:
            errors[name] = outcome
            continue
        with atomic_write(GOLDEN / f"{name}.prototxt", force=args.force, text=True) as f:
            f.write(outcome["text"])
        print(f"wrote {name}.prototxt")
    for filename, data in (("errors.json", errors), ("param_names.json", results["param_names"])):
        with atomic_write(GOLDEN / filename, force=args.force, text=True) as f:
            json.dump(data, f, indent=1, sort_keys=True, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {filename}")


if __name__ == "__main__":
    main(sys.argv[1:])
