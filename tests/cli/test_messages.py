"""What `caffe-fx` says is spelled as its command line: flags (`--outputs`, `--input-shape`,
`--caffe-proto`, `--force`), never compile()'s keywords; advice only where the command
takes the flag; errors before output; caffe_fx's warnings as `caffe-fx CMD: warning:`."""
from __future__ import annotations

from pathlib import Path

import pytest

from caffe_fx import pycaffe
from caffe_fx.cli import main

NET = """name: "m"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 3 } }
"""
DATA_NET = """name: "d"
layer { name: "data" type: "Data" top: "data" top: "label"
        data_param { source: "/no/such/lmdb" batch_size: 4 backend: LMDB } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 2 } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    net = tmp_path / "m.prototxt"
    net.write_text(NET)
    weights = tmp_path / "m.caffemodel"
    pycaffe.Net(str(net), pycaffe.TEST).save(str(weights))
    return net, weights


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_names_its_flags(files, tmp_path, capsys):
    net, weights = files
    out = tmp_path / "m.pt2"
    code, _, err = run(["export", net, weights, "-o", out, "--outputs", "nope,conv"], capsys)
    assert code == 1
    assert f"caffe-fx export: error: {net}: --outputs nope names ['nope'], which are not " \
           "blobs of the net (in this phase); blobs: ['data', 'conv']" in err
    code, _, err = run(["export", net, weights, "-o", out, "--input-shape", "nope=1,2"], capsys)
    assert code == 1
    assert "--input-shape names ['nope'], which are not inputs of the net; inputs: ['data']" in err
    assert "outputs=" not in err and "input_shapes" not in err
    assert not out.exists()


def test_a_refused_overwrite_names_force(files, tmp_path, capsys):
    net, weights = files
    out = tmp_path / "m.pt2"
    out.write_bytes(b"mine")
    code, _, err = run(["export", net, weights, "-o", out], capsys)
    assert code == 1 and "refusing to overwrite it (pass --force)" in err
    assert out.read_bytes() == b"mine"


def test_data_layer_advice_only_where_the_command_takes_input_shape(tmp_path, capsys):
    net = tmp_path / "d.prototxt"
    net.write_text(DATA_NET)
    code, _, err = run(["info", net], capsys)
    assert code == 1
    assert "data_param.source = '/no/such/lmdb' does not exist" in err
    assert "give the tops' shapes with --input-shape data=4,C,H,W --input-shape label=4" in err
    # `caffe-fx test` reads the batches (it has no --input-shape): the source must exist.
    weights = tmp_path / "ip.caffemodel"
    pycaffe.Net(_ip_net(tmp_path), pycaffe.TEST).save(str(weights))
    code, _, err = run(["test", "--model", net, "--weights", weights], capsys)
    assert code == 1
    assert "data_param.source = '/no/such/lmdb' does not exist" in err
    assert "--input-shape" not in err and "input_shapes" not in err


def _ip_net(tmp_path: Path) -> str:
    path = tmp_path / "ip.prototxt"
    path.write_text('layer { name: "data" type: "Input" top: "data" '
                    'input_param { shape { dim: 4 dim: 3 } } }\n'
                    'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
                    'inner_product_param { num_output: 2 } }\n')
    return str(path)


def test_info_checks_the_weights_before_printing_the_table(files, tmp_path, capsys):
    net, _ = files
    code, out, err = run(["info", net, tmp_path / "missing.caffemodel"], capsys)
    assert code == 1 and out == ""
    assert err == f"caffe-fx info: error: {tmp_path / 'missing.caffemodel'}: no such " \
                  "caffemodel file\n"


def test_a_caffemodel_given_as_the_prototxt_says_where_weights_go(files, capsys):
    _, weights = files
    code, _, err = run(["info", weights], capsys)
    assert code == 1 and "pass it as WEIGHTS, after the prototxt" in err
    assert "weights=" not in err


def test_unknown_fields_name_caffe_proto_flag(tmp_path, capsys):
    net = tmp_path / "f.prototxt"
    net.write_text(NET.replace('name: "conv"', 'name: "conv" fork_only: 3'))
    code, _, err = run(["info", net], capsys)
    assert code == 1 and "pass its caffe.proto as --caffe-proto" in err
    assert "caffe_proto=" not in err
    code, _, err = run(["info", net, "--caffe-proto", tmp_path / "no.proto"], capsys)
    assert code == 1
    assert err == f"caffe-fx info: error: --caffe-proto {tmp_path / 'no.proto'}: no such " \
                  ".proto file\n"


def test_convert_refuses_a_schema_with_no_prototxt_to_read(files, tmp_path, capsys):
    _, weights = files
    out = tmp_path / "w.npz"
    code, _, err = run(["convert", weights, "-o", out, "--caffe-proto", tmp_path / "x.proto"],
                       capsys)
    assert code == 1 and not out.exists()
    assert "the schema reads --prototxt, which is not given" in err


def test_warnings_are_lines_of_the_command(files, tmp_path, capsys):
    net, weights = files
    bigger = tmp_path / "bigger.prototxt"
    bigger.write_text(NET + 'layer { name: "conv2" type: "Convolution" bottom: "conv" '
                            'top: "conv2" convolution_param { num_output: 2 kernel_size: 1 } }\n'
                            'layer { name: "r" type: "ReLU" bottom: "conv2" top: "conv2" '
                            'loss_param { ignore_label: 1 } }\n')
    code, out, err = run(["info", bigger, weights], capsys)
    assert code == 0 and "Weights:" in out
    lines = err.splitlines()
    assert lines[0] == (f"caffe-fx info: warning: {bigger}: 1 field(s) set where the layer "
                        "type does not read them; ignored, as Caffe ignores them:")
    assert lines[1] == "  layer 'r' (ReLU): loss_param (it reads: relu_param)"
    assert lines[2] == (f"caffe-fx info: warning: {weights}: the weights do not fit the "
                        "net: 1 layer(s) of the net not filled from them (they keep Caffe's "
                        "fillers): conv2")
    assert len(lines) == 3  # each once, with no Python source lines


def test_train_on_input_blobs_says_what_the_command_reads(tmp_path, capsys):
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{_ip_net(tmp_path)}"\nbase_lr: 0.01\nmax_iter: 1\n'
                      'lr_policy: "fixed"\nsolver_mode: CPU\n')
    code, _, err = run(["train", "--solver", solver], capsys)
    assert code == 1
    assert "the train net's input blob(s) ['data'] are filled by no data layer; caffe-fx " \
           "train reads batches from data layers only" in err
    assert "from Python with caffe_fx.Solver(inputs=" in err


def test_resuming_from_a_caffemodel_says_what_snapshot_takes(tmp_path, capsys, monkeypatch):
    from tests.cli.test_train import workdir

    work = workdir(tmp_path / "w")
    monkeypatch.chdir(work)
    code, _, err = run(["train", "-solver", "solver.prototxt", "-snapshot", "init.caffemodel"],
                       capsys)
    assert code == 1
    assert "caffe-fx train: error: init.caffemodel: SGD.load_history: Incorrect length of " \
           "history blobs: 0 given, 2 expected" in err
    assert "is it a .caffemodel? Resuming takes the .solverstate a snapshot wrote beside it; " \
           "weights alone are given with -weights" in err


def test_an_unknown_layer_type_says_user_layers_come_from_python(tmp_path, capsys):
    net = tmp_path / "u.prototxt"
    net.write_text(NET.replace('type: "Convolution"', 'type: "IPlugin"'))
    code, _, err = run(["info", net], capsys)
    assert code == 1 and "layer 'conv' (type: IPlugin)" in err
    assert "compile(..., layers={TYPE: factory}), from Python: caffe-fx itself loads no " \
           "layer code." in err
