"""`caffe-fx draw` and caffe_fx/drawing.py: the DOT graph pycaffe's draw.py would draw.

The structure is checked node by node and edge by edge for LeNet (as its prototxt wires
it) and for a net with in-place layers and a blob read twice; styles are draw.py's.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from caffe_fx.cli import main
from caffe_fx.drawing import net_to_dot
from tests.nets.oracle import MODELS

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "cli" / "tiny_branches.prototxt"
LENET = MODELS / "ethereon+caffe-tensorflow/examples/mnist/lenet.prototxt"
NODE = re.compile(r'^  "(?P<id>[^"]+)" \[(?P<attrs>.*)\];$')
EDGE = re.compile(r'^  "(?P<src>[^"]+)" -> "(?P<dst>[^"]+)"(?: \[label="(?P<label>[^"]*)"\])?;$')


def parse(dot: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str, str | None]]]:
    nodes: dict[str, dict[str, str]] = {}
    edges = []
    for line in dot.splitlines()[2:-1]:
        if m := EDGE.match(line):
            edges.append((m["src"], m["dst"], m["label"]))
        elif m := NODE.match(line):
            nodes[m["id"]] = dict(re.findall(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,]+)', m["attrs"]))
            nodes[m["id"]] = {k: v.strip('"') for k, v in nodes[m["id"]].items()}
        else:
            raise AssertionError(f"unexpected DOT line: {line!r}")
    return nodes, edges


def test_lenet_nodes_and_edges() -> None:
    if not LENET.exists():
        pytest.skip(f"needs ../shared/models ({LENET} is absent)")
    dot = net_to_dot(LENET)
    assert dot.startswith('digraph "LeNet" {\n  rankdir=LR;\n') and dot.endswith("}\n")
    nodes, edges = parse(dot)
    layers = ["data", "conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "prob"]
    blobs = ["data", "conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "prob"]
    assert list(nodes) == [f"layer:{x}" for x in layers] + [f"blob:{x}" for x in blobs]
    assert edges == [
        ("layer:data", "blob:data", None),
        ("blob:data", "layer:conv1", None), ("layer:conv1", "blob:conv1", "20"),
        ("blob:conv1", "layer:pool1", None), ("layer:pool1", "blob:pool1", None),
        ("blob:pool1", "layer:conv2", None), ("layer:conv2", "blob:conv2", "50"),
        ("blob:conv2", "layer:pool2", None), ("layer:pool2", "blob:pool2", None),
        ("blob:pool2", "layer:ip1", None), ("layer:ip1", "blob:ip1", "500"),
        ("blob:ip1", "layer:relu1", None), ("layer:relu1", "blob:ip1", None),
        ("blob:ip1", "layer:ip2", None), ("layer:ip2", "blob:ip2", "10"),
        ("blob:ip2", "layer:prob", None), ("layer:prob", "blob:prob", None),
    ]
    colors = {k[len("layer:"):]: v["fillcolor"] for k, v in nodes.items() if k.startswith("layer:")}
    assert colors == {"data": "#6495ED", "conv1": "#FF5050", "pool1": "#FF9900",
                      "conv2": "#FF5050", "pool2": "#FF9900", "ip1": "#CC33FF",
                      "relu1": "#90EE90", "ip2": "#CC33FF", "prob": "#6495ED"}
    assert nodes["layer:conv1"]["label"] == \
        r"conv1\n(Convolution)\nkernel size: 5\nstride: 1\npad: 0"
    assert nodes["layer:pool1"]["label"] == \
        r"pool1\n(Pooling MAX)\nkernel size: 2\nstride: 2\npad: 0"
    for b in blobs:
        assert nodes[f"blob:{b}"] == {"shape": "octagon", "style": "filled",
                                      "fillcolor": "#E0E0E0", "label": b}
    assert all(v["shape"] == "record" for k, v in nodes.items() if k.startswith("layer:"))


def test_inplace_layers_sit_on_their_blob_and_splits_stay_implicit() -> None:
    nodes, edges = parse(net_to_dot(TINY, rankdir="TB"))
    for layer in ("bn1", "scale1", "relu1"):
        assert nodes[f"layer:{layer}"]["fillcolor"] == "#90EE90"
        assert ("blob:conv1", f"layer:{layer}", None) in edges
        assert ("layer:" + layer, "blob:conv1", None) in edges
    # conv1 feeds two layers: one blob node with two edges out, no Split node (Caffe's
    # draw.py draws the NetParameter, before insert_splits).
    readers = [dst for src, dst, _ in edges if src == "blob:conv1"]
    assert readers == ["layer:bn1", "layer:scale1", "layer:relu1", "layer:conv2a", "layer:sum"]
    assert not any("split" in n for n in nodes)
    # Vertical layouts separate label words with spaces (draw.py's get_layer_label).
    assert nodes["layer:pool"]["label"] == "pool (Pooling MAX) kernel size: 3 stride: 2 pad: 0"
    assert nodes["layer:up"]["label"] == "up (Deconvolution) kernel size: 2 stride: 2 pad: 0"
    assert ("layer:up", "blob:up", "4") in edges


def test_phase_filters_layers(tmp_path: Path) -> None:
    net = tmp_path / "net.prototxt"
    net.write_text(TINY.read_text().replace(
        'layer { name: "prob"',
        'layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" '
        'include { phase: TRAIN } }\nlayer { name: "prob"'))
    assert "layer:drop" in parse(net_to_dot(net))[0]  # default: every layer, as draw_net.py
    assert "layer:drop" in parse(net_to_dot(net, phase="train"))[0]
    assert "layer:drop" not in parse(net_to_dot(net, phase="test"))[0]


def test_names_are_escaped(tmp_path: Path) -> None:
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "in|{x}" type: "Input" top: "a\\"b\\\\" '
                   'input_param { shape { dim: 1 } } }\n')
    dot = net_to_dot(net)
    assert r'"layer:in|{x}" [shape=record' in dot
    assert r'label="in\|\{x\}\n(Input)"' in dot
    # The blob is named a"b\ (one backslash): quoted, and the backslash doubled so that
    # Graphviz does not read it as an escape.
    assert r'"blob:a\"b\\" [shape=octagon, style=filled, fillcolor="#E0E0E0", ' \
           r'label="a\"b\\"];' in dot
    if shutil.which("dot"):
        out = tmp_path / "net.svg"
        assert main(["draw", str(net), "-o", str(out)]) == 0


def test_cli_writes_dot_and_refuses_to_overwrite(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net.dot"
    assert main(["draw", str(TINY), "-o", str(out), "--rankdir", "BT"]) == 0
    assert out.read_text() == net_to_dot(TINY, rankdir="BT")
    assert capsys.readouterr().out == f"wrote {out}\n"
    out.write_text("mine")
    assert main(["draw", str(TINY), "-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err and out.read_text() == "mine"
    assert main(["draw", str(TINY), "-o", str(out), "--force"]) == 0
    assert out.read_text() == net_to_dot(TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.dot"]  # no temp files left


def test_cli_dot_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["draw", str(TINY), "-o", "-"]) == 0
    assert capsys.readouterr().out == net_to_dot(TINY)


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot binary")
def test_cli_renders_svg_and_png(tmp_path: Path) -> None:
    assert main(["draw", str(TINY), "-o", str(tmp_path / "n.svg")]) == 0
    svg = (tmp_path / "n.svg").read_text()
    assert "<svg" in svg and ">conv1_relu1" not in svg and ">scale1</text>" in svg
    assert main(["draw", str(TINY), "-o", str(tmp_path / "n.png")]) == 0
    assert (tmp_path / "n.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_dot_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["draw", str(TINY), "-o", str(tmp_path / "n.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install graphviz" in err
    assert not list(tmp_path.iterdir())


def test_unknown_extension(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["draw", str(TINY), "-o", str(tmp_path / "n.jpg")]) == 1
    assert "allowed: .dot, .gv, .svg, .png, .pdf" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["draw", "-h"])
    assert e.value.code == 0
    assert "--rankdir" in capsys.readouterr().out
