"""The notebook scripts of this folder and the files each one is run with.

Shared by tools/make_notebook_goldens.py (runs them under BVLC pycaffe 1.0 in the
reference chroot) and tests/pycaffe/test_notebooks.py (runs them under caffe_fx through
`python -m caffe_fx.pycaffe.run`).  Nets and weights come from ../shared/models at run
time; CaffeNet's weights are made by real Caffe (`caffe-oracle forward --randomize 7`).
"""
from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Names a script argument may use, as paths under ../shared/models.
SHARED_FILES: dict[str, str] = {
    "caffenet_deploy": "BVLC+caffe/models/bvlc_reference_caffenet/deploy.prototxt",
    "caffenet_full_conv": "BVLC+caffe/examples/net_surgery/bvlc_caffenet_full_conv.prototxt",
    "surgery_conv": "BVLC+caffe/examples/net_surgery/conv.prototxt",
    "lenet": "ethereon+caffe-tensorflow/examples/mnist/lenet.prototxt",
    "lenet_weights": "ethereon+caffe-tensorflow/examples/mnist/lenet_iter_10000.caffemodel",
}
CAFFENET_WEIGHTS = "caffenet_weights"  # made by the oracle, see make_caffenet_weights
SCRATCH = "scratch"                    # a writable folder for the script's own files
RANDOMIZE_SEED = 7


@dataclass(frozen=True)
class Notebook:
    """One script: `python <name>.py OUT.npz <args...>`, each arg a key of
    SHARED_FILES, CAFFENET_WEIGHTS or SCRATCH."""

    name: str
    args: tuple[str, ...]

    @property
    def script(self) -> Path:
        return HERE / f"{self.name}.py"

    @property
    def needs_caffenet_weights(self) -> bool:
        return CAFFENET_WEIGHTS in self.args

    def argv(self, out: str, paths: Mapping[str, str]) -> list[str]:
        return [out, *(paths[a] for a in self.args)]


NOTEBOOKS: tuple[Notebook, ...] = (
    Notebook("classification", ("caffenet_deploy", CAFFENET_WEIGHTS)),
    Notebook("net_surgery", ("surgery_conv", "caffenet_deploy", "caffenet_full_conv",
                             CAFFENET_WEIGHTS, SCRATCH)),
    Notebook("filter_visualization", ("lenet", "lenet_weights")),
    Notebook("net_spec_lenet", (SCRATCH,)),
)


def make_caffenet_weights(oracle: Path, deploy: Path, dest: Path) -> None:
    """Real Caffe's seeded random weights for CaffeNet's deploy net, as a .caffemodel."""
    proc = subprocess.run(
        [str(oracle), "forward", str(deploy), "--randomize", str(RANDOMIZE_SEED),
         "--save-weights", str(dest), "--out", str(dest.with_suffix(".oracle.npz"))],
        capture_output=True, text=True, check=False)
    dest.with_suffix(".oracle.npz").unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"caffe-oracle failed making {dest}:\n{proc.stderr[-3000:]}")
