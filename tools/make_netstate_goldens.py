"""Writes tests/golden/netstate/netstate.json: which layers and blobs real Caffe's Net keeps.

Net::Net (src/caffe/net.cpp) keeps the file's `state`, overrides its phase and level with
the constructor's and appends the constructor's stages to the file's; Net::FilterNet then
keeps the layers whose include/exclude rules (phase, stage, not_stage, min_level,
max_level) that NetState meets.  The nets below (ours) set a file-level state or none and
exercise every kind of rule; for each (net, phase, level, stages) real pycaffe's
`caffe.Net(file, phase, level=, stages=)` is built and its `_layer_names` and `blobs` keys
recorded (implicit Split layers included).  Nothing else is stored.

Developer tool, run by hand (root, for chroot):  sudo python tools/make_netstate_goldens.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools._chroot import chroot_workdir, replace_folder, run_in_chroot  # noqa: E402

GOLDEN = ROOT / "tests" / "golden" / "netstate"

# One ReLU per rule, each reading `data` (so the kept ones also decide Caffe's Splits).
RULES = {
    "inc_deploy": 'include { stage: "deploy" }',
    "exc_deploy": 'exclude { stage: "deploy" }',
    "inc_not_deploy": 'include { not_stage: "deploy" }',
    "inc_min_level2": "include { min_level: 2 }",
    "inc_max_level1": "include { max_level: 1 }",
    "inc_train": "include { phase: TRAIN }",
    "inc_test": "include { phase: TEST }",
    "exc_test_deploy": 'exclude { phase: TEST stage: "deploy" }',
    "inc_deploy_and_given": 'include { stage: "deploy" stage: "given" }',
    "inc_given_or_level1": 'include { stage: "given" } include { min_level: 1 }',
    "inc_extra": 'include { stage: "extra" }',
    "exc_level1_to_2": "exclude { min_level: 1 max_level: 2 }",
}


def _net(name: str, state: str) -> str:
    lines = [f'name: "{name}"']
    if state:
        lines.append(f"state {{ {state} }}")
    lines.append('layer { name: "data" type: "Input" top: "data" '
                 "input_param { shape { dim: 2 dim: 3 } } }")
    for layer, rule in RULES.items():
        lines.append(f'layer {{ name: "{layer}" type: "ReLU" bottom: "data" '
                     f'top: "{layer}" {rule} }}')
    # A consumer of a rule-dependent blob: its bottom exists only when inc_deploy is kept.
    lines.append('layer { name: "after_deploy" type: "ReLU" bottom: "inc_deploy" '
                 'top: "after_deploy" include { stage: "deploy" } }')
    return "\n".join(lines) + "\n"


NETS = {
    "file_state.prototxt": _net("file_state",
                                'phase: TRAIN level: 3 stage: "deploy" stage: "extra"'),
    "file_level.prototxt": _net("file_level", "level: 2"),
    "no_state.prototxt": _net("no_state", ""),
}

# (phase, level, stages): stages None is pycaffe's default (no stages argument).
STATES = [
    ("TEST", 0, None),
    ("TRAIN", 0, None),
    ("TEST", 1, ["given"]),
    ("TEST", 2, ["deploy"]),
    ("TRAIN", 3, ["given", "deploy"]),
    ("TEST", 0, ["extra", "given"]),
]

# Runs inside the chroot (Python 3.9), in the folder holding NETS.
INNER = r'''
import json, os, sys
import caffe

here = sys.argv[1]
os.chdir(here)
nets, states = json.loads(sys.argv[2]), json.loads(sys.argv[3])
cases = []
for name in nets:
    for phase, level, stages in states:
        kwargs = {"level": level}
        if stages is not None:
            kwargs["stages"] = stages
        net = caffe.Net(name, getattr(caffe, phase), **kwargs)
        cases.append({"net": name, "phase": phase, "level": level, "stages": stages,
                      "layers": list(net._layer_names), "blobs": list(net.blobs.keys())})
with open("netstate.json", "w") as f:
    json.dump({"nets": {n: open(n).read() for n in nets}, "cases": cases}, f, indent=1)
    f.write("\n")
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", default=os.environ.get("CAFFE_ROOT", "/opt/caffe-ref"))
    args = parser.parse_args()
    with chroot_workdir(Path(args.caffe_root), "netstate_goldens_") as (work, inside):
        for name, text in NETS.items():
            (work / name).write_text(text)
        (work / "inner.py").write_text(INNER)
        run_in_chroot(args.caffe_root, f"{inside}/inner.py",
                      [inside, json.dumps(list(NETS)), json.dumps(STATES)])
        replace_folder(GOLDEN, work, ("netstate.json",))
    print(f"wrote {GOLDEN / 'netstate.json'}")


if __name__ == "__main__":
    main()
