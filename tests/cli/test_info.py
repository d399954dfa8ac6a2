"""`caffe-fx info` and caffe_fx/summary.py against what real Caffe reports.

Layer order, bottoms/tops (implicit Splits included), blob shapes and parameter blob
shapes come from tests/golden/info/*.json (tools/make_info_goldens.py, real Caffe).
FLOPs are not a Caffe quantity: LeNet's are counted by hand here from Caffe's shapes,
AlexNet's multiply-adds checked against the well-known ~0.72 G.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from caffe_fx.cli import main
from caffe_fx.errors import ProtoParseError
from caffe_fx.summary import summarize
from tests.nets.oracle import MODELS

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "info"
TINY = ROOT / "tests" / "cli" / "tiny_branches.prototxt"
LENET = MODELS / "ethereon+caffe-tensorflow/examples/mnist"


def golden(name: str) -> dict:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def net_path(g: dict) -> Path:
    if g["base"] == "repo":
        return ROOT / g["prototxt"]
    path = MODELS / g["prototxt"]
    if not path.exists():
        pytest.skip(f"needs ../shared/models ({path} is absent)")
    return path


def shape_arg(g: dict) -> list[str]:
    return [f"--input-shape={b}={','.join(map(str, s))}" for b, s in g["inputs"].items()]


@pytest.mark.parametrize("name", [
    "tiny_branches", "lenet", "alexnet", pytest.param("googlenet", marks=pytest.mark.slow)])
def test_layers_shapes_and_params_are_caffes(name: str) -> None:
    g = golden(name)
    s = summarize(net_path(g), input_shapes=g["inputs"])
    got = [{"name": r.name, "type": r.type, "bottoms": list(r.bottoms), "tops": list(r.tops)}
           for r in s.rows]
    assert got == g["layers"]
    for r in s.rows:
        assert [list(x) for x in r.top_shapes] == [g["blobs"][t] for t in r.tops], r.name
        assert [list(x) for x in r.param_shapes] == g["params"].get(r.name, []), r.name
        assert r.params == sum(math.prod(x) for x in g["params"].get(r.name, []))
        assert r.implicit == (r.type == "Split")  # none of these nets declares a Split
    assert s.total_params == sum(math.prod(x) for v in g["params"].values() for x in v)


def test_cli_prints_the_table_and_totals(capsys: pytest.CaptureFixture[str]) -> None:
    g = golden("tiny_branches")
    assert main(["info", str(TINY)]) == 0
    out = capsys.readouterr().out
    total = sum(math.prod(x) for v in g["params"].values() for x in v)
    assert f"Total params: {total:,}" in out
    assert "conv1_relu1_0_split (Split*)" in out
    assert "conv1_relu1_0_split_1, conv2a -> sum" in out
    assert "(2, 8, 6, 6)" in out  # pool
    assert "a multiply-add counts 2" in out
    assert "* a Split layer Caffe inserts" in out


def test_lenet_flops_counted_by_hand() -> None:
    g = golden("lenet")
    b = g["blobs"]
    s = summarize(net_path(g), input_shapes=g["inputs"])
    flops = {r.name: r.flops for r in s.rows}

    def numel(blob: str) -> int:
        return math.prod(b[blob])

    # conv: one multiply-add (2 FLOPs) per weight per output element, plus the bias add.
    c_in1, c_in2, k = b["data"][1], b["pool1"][1], 5
    assert flops["conv1"] == numel("conv1") * (2 * c_in1 * k * k + 1)
    assert flops["conv2"] == numel("conv2") * (2 * c_in2 * k * k + 1)
    # 2x2 max pooling: 4 comparisons per output.
    assert flops["pool1"] == numel("pool1") * 4
    assert flops["pool2"] == numel("pool2") * 4
    k_ip1 = math.prod(b["pool2"][1:])
    assert flops["ip1"] == numel("ip1") * (2 * k_ip1 + 1)
    assert flops["ip2"] == numel("ip2") * (2 * b["ip1"][1] + 1)
    assert flops["relu1"] == flops["prob"] == flops["data"] == 0
    assert s.total_flops == sum(flops.values())


def test_alexnet_multiply_adds_are_the_known_072_g() -> None:
    g = golden("alexnet")
    s = summarize(net_path(g), input_shapes={"data": (1, 3, 227, 227)})
    # Remove the bias adds (one per output) and halve: conv + fc multiply-adds.
    macs = sum((r.flops - math.prod(r.top_shapes[0])) // 2 for r in s.rows
               if r.type in ("Convolution", "InnerProduct"))
    assert 0.70e9 < macs < 0.74e9


def test_tiny_flops_of_the_other_counted_types() -> None:
    g = golden("tiny_branches")
    b, p = g["blobs"], g["params"]
    s = summarize(TINY, input_shapes=g["inputs"])
    flops = {r.name: r.flops for r in s.rows}
    n = math.prod(b["sum"])
    assert flops["sum"] == n  # two bottoms: one add per element
    assert flops["bn1"] == 2 * n and flops["scale1"] == 2 * n  # scale with bias
    assert flops["norm"] == n * (2 * 3 + 2)  # local_size 3
    # Deconvolution: every input element through Cout/group * k * k weights, no bias.
    assert flops["up"] == 2 * math.prod(b["pool"]) * math.prod(p["up"][0][1:])
    assert flops["conv1_relu1_0_split"] == flops["flat"] == 0


def test_phase_selects_layers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net.prototxt"
    net.write_text(TINY.read_text().replace(
        'layer { name: "prob"',
        'layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" '
        'include { phase: TRAIN } }\nlayer { name: "prob"'))
    assert main(["info", str(net), "--phase", "train"]) == 0
    assert "drop (Dropout)" in capsys.readouterr().out
    assert main(["info", str(net)]) == 0
    assert "drop (Dropout)" not in capsys.readouterr().out


def test_data_layer_needs_an_input_shape(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "net.prototxt"
    net.write_text('layer { name: "d" type: "Data" top: "data" top: "label" }\n'
                   'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                   'inner_product_param { num_output: 3 } }\n')
    assert main(["info", str(net)]) == 1
    err = capsys.readouterr().err
    # the CLI's own flag, for every top, not compile()'s keyword
    assert err.count("\n") == 1 and "input_shapes=" not in err
    assert "give the tops' shapes with --input-shape data=N,C,H,W --input-shape label=N " \
           "instead" in err
    assert main(["info", str(net), "--input-shape", "data=2,4,1,1",
                 "--input-shape", "label=2"]) == 0
    out = capsys.readouterr().out
    assert "(2, 3)" in out and "15" in out  # ip: 3x4 weights + 3 biases


def test_weights_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    weights = LENET / "lenet_iter_10000.caffemodel"
    if not weights.exists():
        pytest.skip(f"needs ../shared/models ({weights} is absent)")
    assert main(["info", str(LENET / "lenet.prototxt"), str(weights)]) == 0
    assert "4 of 4 layers with parameters filled" in capsys.readouterr().out
    # tiny_branches has a conv1 too, of another shape.
    assert main(["info", str(TINY), str(weights)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("caffe-fx info: error: ") and "conv1" in err


def test_errors_are_one_line_unless_debug(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "no/such.prototxt"]) == 1
    err = capsys.readouterr().err
    assert err == ("caffe-fx info: error: no/such.prototxt: no such prototxt file (a path, "
                   "prototxt text, or a NetParameter is allowed)\n")
    for argv in (["info", "no/such.prototxt", "--debug"], ["--debug", "info", "no/such.prototxt"]):
        with pytest.raises(ProtoParseError, match="no such prototxt file"):
            main(argv)


@pytest.mark.parametrize("bad, why", [
    ("data", "'data' is not BLOB=DIMS"),
    ("=1,2", "'=1,2' is not BLOB=DIMS"),
    ("data=", "'data=' gives no dims for 'data'"),
    ("data=1,a", "'data=1,a': dim 1 = 'a' is not an integer"),
    ("data=1,,3", "'data=1,,3': dim 1 = '' is not an integer"),
    ("data=1,1,-5,28", "'data=1,1,-5,28': dim 2 = -5 is negative; allowed: 0 or more"),
])
def test_bad_input_shape_is_a_usage_error_saying_what_is_wrong(
        bad: str, why: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["info", str(TINY), "--input-shape", bad])
    assert e.value.code == 2
    assert f"caffe-fx info: error: argument --input-shape: {why}" in capsys.readouterr().err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["info", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: caffe-fx info") and "--input-shape" in out


def test_a_solver_file_is_named_as_one_with_the_cli_command_that_trains_it(
        capsys: pytest.CaptureFixture[str]) -> None:
    solver = MODELS / "BVLC+caffe" / "examples" / "mnist" / "lenet_solver.prototxt"
    if not solver.exists():
        pytest.skip(f"needs ../shared/models ({solver} is absent)")
    assert main(["info", str(solver)]) == 1
    err = capsys.readouterr().err
    assert err == (f"caffe-fx info: error: {solver}: this is a solver prototxt (every field "
                   "in it is SolverParameter's), not a net (it names net = "
                   "'examples/mnist/lenet_train_test.prototxt'); give the net's prototxt "
                   "here, or train with the solver: caffe-fx train --solver SOLVER\n")


def test_a_net_given_as_the_weights_is_said_in_the_clis_words(
        capsys: pytest.CaptureFixture[str]) -> None:
    # The weights are read in a thread while the net builds: its errors are still the
    # CLI's (errors.CALLER), not compile()'s Python spelling.
    net = LENET / "lenet.prototxt"
    if not net.exists():
        pytest.skip(f"needs ../shared/models ({net} is absent)")
    assert main(["info", str(net), str(net)]) == 1
    assert capsys.readouterr().err == (
        f"caffe-fx info: error: {net}: not a caffemodel: it is a net prototxt (text), not "
        "weights: give it where the net is asked for (the first argument; caffe-fx "
        "convert's --prototxt) and a caffemodel here\n")
