"""Brings an OICR checkout (ppengtang/oicr, Python 2 + pycaffe) to Python 3 on caffe_fx.

examples/oicr: run once on a checkout, in place:

    python examples/oicr/port.py /path/to/oicr

1. 2to3 (lib2to3, in Python up to 3.12; or the `fissix` package) on tools/ and lib/.
2. The few rewrites 2to3 does not make, each checked to apply (see REWRITES): numpy 2's
   removed aliases (np.float, np.int, np.bool), PyYAML 6's yaml.load(..., Loader),
   pickles opened in text mode, `array == []`, `import PIL` without PIL.Image, and
   datasets/__init__.py's refusal to import without MATLAB (only the optional MATLAB
   evaluation needs it: now a warning).
3. lib/utils/cython_bbox.py and cython_nms.py in NumPy (utils/ beside this file) where the
   Cython modules (lib/utils/*.pyx, `make` in lib/) are not built.
4. caffe_fx_oicr.py (beside this file) copied into tools/ and imported first by the
   scripts there, so that `import caffe` gives caffe_fx.pycaffe.

A second run changes nothing (tools/.caffe_fx_ported marks a ported checkout).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARK = Path("tools") / ".caffe_fx_ported"
DROP_IN = "caffe_fx_oicr"
# The scripts of tools/ that import caffe (directly, or through fast_rcnn.test).
SCRIPTS = ("train_net.py", "test_net.py", "reval.py", "reval_discovery.py")
IMPORT_LINE = f"import {DROP_IN}  # noqa: F401  (caffe_fx: `import caffe` is caffe_fx.pycaffe)\n"

# numpy 2 removed these aliases of the builtins (numpy 1.24 already refused them).
NUMPY_ALIASES = ((re.compile(r"\bnp\.float\b(?!\d|_)"), "np.float64"),
                 (re.compile(r"\bnp\.int\b(?!\d|_|c)"), "np.int_"),
                 (re.compile(r"\bnp\.bool\b(?!_)"), "np.bool_"))

MATLAB_CHECK = "    raise EnvironmentError(msg)\n"
MATLAB_WARN = ("    import warnings  # caffe_fx port: MATLAB is needed only for matlab_eval\n"
               "    warnings.warn(msg)\n")

# (file, text after 2to3, its replacement): each must be found once in an unported file.
REWRITES: tuple[tuple[str, str, str], ...] = (
    ("lib/roi_data_layer/layer.py", "yaml.load(self.param_str)", "yaml.safe_load(self.param_str)"),
    ("lib/oicr_layer/layer.py", "yaml.load(self.param_str)", "yaml.safe_load(self.param_str)"),
    ("lib/fast_rcnn/config.py", "edict(yaml.load(f))", "edict(yaml.safe_load(f))"),
    ("lib/datasets/imdb.py", "import PIL\n", "import PIL.Image\n"),
    ("lib/datasets/__init__.py", MATLAB_CHECK, MATLAB_WARN),
    ("lib/datasets/pascal_voc.py", "if dets == []:", "if len(dets) == 0:"),
    ("lib/fast_rcnn/test.py", "if dets == []:", "if len(dets) == 0:"),
    ("lib/datasets/pascal_voc.py", "cls + '_pr.pkl'), 'w')", "cls + '_pr.pkl'), 'wb')"),
    ("lib/datasets/pascal_voc.py", "cls + '_corloc.pkl'), 'w')",
     "cls + '_corloc.pkl'), 'wb')"),
    ("lib/datasets/voc_eval.py", "open(cachefile, 'w')", "open(cachefile, 'wb')"),
    ("lib/datasets/voc_eval.py", "open(cachefile, 'r')", "open(cachefile, 'rb')"),
    ("lib/datasets/dis_eval.py", "open(cachefile, 'w')", "open(cachefile, 'wb')"),
    ("lib/datasets/dis_eval.py", "open(cachefile, 'r')", "open(cachefile, 'rb')"),
)


class PortError(RuntimeError):
    """The checkout is not what this script knows how to port."""


def _say(message: str) -> None:
    print(f"port: {message}", flush=True)


def run_2to3(root: Path, runners: Sequence[str] = ("lib2to3", "fissix")) -> None:
    """2to3 -w -n on tools/ and lib/ (lib2to3 of the running Python, else fissix)."""
    runner = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in runners:
            try:
                __import__(f"{module}.main")
            except ImportError:
                continue
            runner = module
            break
    if runner is None:
        raise PortError(f"2to3 is not available in Python {sys.version.split()[0]} (lib2to3 "
                        "was removed in 3.13): run this script with Python 3.10-3.12, or "
                        "`pip install fissix`")
    # lib2to3/__main__.py, for either package (fissix has no __main__).
    main = (f"import sys; from {runner}.main import main; "
            f"sys.exit(main('{runner}.fixes', sys.argv[1:]))")
    # fissix adds fix_sorted, which rewrites np.sort(x) to np.sort(key=cmp_to_key(x)).
    skip = ["-x", "sorted"] if runner == "fissix" else []
    cmd = [sys.executable, "-W", "ignore", "-c", main, "-w", "-n", "--no-diffs", *skip, "tools",
           "lib"]
    _say(f"2to3 ({runner}) -w -n --no-diffs tools lib")
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PortError(f"2to3 failed ({done.returncode}):\n{done.stderr[-4000:]}")


def rewrite(root: Path) -> None:
    """The REWRITES and the numpy aliases, file by file."""
    for name, old, new in REWRITES:
        path = root / name
        text = path.read_text()
        count = text.count(old)
        if count != 1:
            raise PortError(f"{name}: expected {old.strip()!r} once after 2to3, found it "
                            f"{count} times (not the OICR checkout this script knows?)")
        path.write_text(text.replace(old, new))
        _say(f"{name}: {old.strip()} -> {new.strip().splitlines()[-1]}")
    for path in sorted((root / "lib").rglob("*.py")) + sorted((root / "tools").glob("*.py")):
        text = path.read_text()
        out = text
        for pattern, repl in NUMPY_ALIASES:
            out = pattern.sub(repl, out)
        if out != text:
            path.write_text(out)
            _say(f"{path.relative_to(root)}: numpy 2 aliases (np.float -> np.float64, "
                 "np.int -> np.int_, np.bool -> np.bool_)")


def _built(utils: Path, module: str) -> bool:
    return any(utils.glob(f"{module}*.so")) or any(utils.glob(f"{module}*.pyd"))


def add_numpy_cython(root: Path) -> None:
    """utils/cython_bbox.py and cython_nms.py in NumPy where the .pyx are not built."""
    utils = root / "lib" / "utils"
    for module in ("cython_bbox", "cython_nms"):
        if _built(utils, module):
            _say(f"lib/utils/{module}: a compiled module is there; kept")
            continue
        shutil.copyfile(HERE / "utils" / f"{module}.py", utils / f"{module}.py")
        _say(f"lib/utils/{module}.py: NumPy version (the Cython one is not built)")


def add_drop_in(root: Path) -> None:
    """tools/caffe_fx_oicr.py, imported by each script before anything else."""
    tools = root / "tools"
    shutil.copyfile(HERE / f"{DROP_IN}.py", tools / f"{DROP_IN}.py")
    for script in SCRIPTS:
        path = tools / script
        if not path.is_file():
            continue
        lines = path.read_text().splitlines(keepends=True)
        at = next((i for i, line in enumerate(lines)
                   if line.startswith(("import ", "from "))), None)
        if at is None:
            raise PortError(f"tools/{script}: no import line to put `import {DROP_IN}` before")
        lines.insert(at, IMPORT_LINE)
        path.write_text("".join(lines))
        _say(f"tools/{script}: imports {DROP_IN} first")


def port(root: str | Path, runners: Sequence[str] = ("lib2to3", "fissix")) -> bool:
    """Ports the checkout at root in place; False (and no change) if it already is.
    `runners`: the 2to3 packages to try, in order."""
    root = Path(root).resolve()
    for need in ("tools/train_net.py", "lib/fast_rcnn/config.py", "lib/oicr_layer/layer.py"):
        if not (root / need).is_file():
            raise PortError(f"{root}: no {need}; is this an OICR checkout?")
    if (root / MARK).exists():
        _say(f"{root} is already ported ({MARK} exists); nothing to do")
        return False
    run_2to3(root, runners)
    rewrite(root)
    add_numpy_cython(root)
    add_drop_in(root)
    (root / MARK).write_text("ported for caffe_fx by examples/oicr/port.py\n")
    _say(f"done: {root}")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", help="the OICR checkout (its root: tools/, lib/, models/)")
    parser.add_argument("--2to3", dest="runner", choices=("lib2to3", "fissix"),
                        help="the 2to3 package to use (default: lib2to3 if this Python has "
                        "it, else fissix)")
    args = parser.parse_args(argv)
    try:
        port(args.checkout, (args.runner,) if args.runner else ("lib2to3", "fissix"))
    except PortError as e:
        print(f"port: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
