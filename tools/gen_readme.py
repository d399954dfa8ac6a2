"""Regenerates the README's generated sections from the code itself.

    python tools/gen_readme.py          # rewrite README.md in place
    python tools/gen_readme.py --check  # exit 1 if README.md is stale (a test runs this)

Sections: the supported-layer table (from the registry) and the generated code of a
small net (from caffe_fx.compile), between `<!-- NAME:start -->` / `<!-- NAME:end -->`.
"""
from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import caffe_fx  # noqa: E402
from caffe_fx.lowering.builder import SOURCE_TYPES  # noqa: E402
from caffe_fx.lowering.registry import lookup  # noqa: E402

SMALL_NET = """\
name: "tiny"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 3 dim: 32 dim: 32 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc"
        inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def layer_table() -> str:
    rows = ["| Caffe type | from | lowered by | params read |", "|---|---|---|---|"]
    for kind in caffe_fx.supported_layers():
        spec = lookup(kind)
        module = inspect.getmodule(spec.fn).__name__.rsplit(".", 1)[-1]
        params = ", ".join(f"`{p}`" for p in spec.params) or "none"
        origin = f"[{spec.fork}](https://github.com/{spec.fork})" if spec.fork else "BVLC"
        rows.append(f"| {kind} | {origin} | `layers/{module}.py:{spec.fn.__name__}` | "
                    f"{params} |")
    sources = ", ".join(sorted(SOURCE_TYPES))
    rows.append("")
    rows.append(f"Input and data layers ({sources}) become the GraphModule's inputs.")
    return "\n".join(rows)


def small_net_code() -> str:
    gm = caffe_fx.compile(SMALL_NET)
    code = gm.code.strip("\n")
    return "```prototxt\n" + SMALL_NET + "```\n\nbecomes\n\n```python\n" + code + "\n```"


def render(text: str) -> str:
    for name, body in (("layers", layer_table()), ("tiny-net", small_net_code())):
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name}:start/end --> markers")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    readme = ROOT / "README.md"
    old = readme.read_text()
    new = render(old)
    if a.check:
        sys.exit(0 if new == old else 1)
    tmp = readme.with_suffix(".md.tmp")
    tmp.write_text(new)
    tmp.replace(readme)


if __name__ == "__main__":
    main()
