"""Python layers without bottoms (data layers) become inputs in compile(); the facade runs them.

OICR's RoIDataLayer (../shared/clients/oicr/lib/roi_data_layer) and FCN's VOCSegDataLayer
are such layers: compile() never imports them, their tops are fed like Data layers' (shapes
from input_shapes=); caffe_fx.pycaffe.Net runs their code, as pycaffe does.  A layer
module's `import caffe` gets caffe_fx.pycaffe when no real caffe is importable: checked in a
fresh interpreter, since this process's sys.modules must never hold a `caffe`.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

import caffe_fx
from caffe_fx import errors
from caffe_fx.cli import main
from caffe_fx.proto import caffe_pb2

ROOT = Path(__file__).resolve().parents[2]
OICR = ROOT.parent / "shared" / "clients" / "oicr"
OICR_TRAIN = OICR / "models" / "VGG_M" / "train.prototxt"

DATA = ('layer { name: "input" type: "Python" top: "data" top: "label" python_param { '
        'module: "toy_data_layer" layer: "ToyDataLayer" param_str: "3" } }\n')
RELU = 'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n'
SCALE = ('layer { name: "py" type: "Python" bottom: "r" top: "s" python_param { '
         'module: "toy_scale_layer" layer: "ToyScaleLayer" } }\n')

# Written to a folder on sys.path; `import caffe` at the top, as OICR's and FCN's layers do.
TOY_DATA = '''
import numpy as np
import caffe


class ToyDataLayer(caffe.Layer):
    """data = arange(n*2*3) / 10 reshaped (n, 2, 3) - 1, label = arange(n); n = param_str."""

    def setup(self, bottom, top):
        self.n = int(self.param_str)

    def reshape(self, bottom, top):
        top[0].reshape(self.n, 2, 3)
        top[1].reshape(self.n)

    def forward(self, bottom, top):
        top[0].data[...] = np.arange(self.n * 6).reshape(self.n, 2, 3) / 10.0 - 1.0
        top[1].data[...] = np.arange(self.n)

    def backward(self, top, propagate_down, bottom):
        pass
'''
TOY_SCALE = '''
import caffe


class ToyScaleLayer(caffe.Layer):
    """top = 3 * bottom."""

    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 3 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = 3 * top[0].diff
'''


def toy_data(n: int = 3) -> np.ndarray:
    return (np.arange(n * 6).reshape(n, 2, 3) / 10.0 - 1.0).astype(np.float32)


def write(tmp_path: Path, body: str) -> str:
    path = tmp_path / "net.prototxt"
    path.write_text(body)
    return str(path)


def test_a_python_data_layer_becomes_inputs_without_importing(tmp_path):
    gm = caffe_fx.compile(write(tmp_path, DATA + RELU),
                          input_shapes={"data": (3, 2, 3), "label": (3,)})
    assert gm.meta["caffe"].inputs == ["data", "label"]
    x = torch.from_numpy(toy_data())
    out = gm(data=x, label=torch.zeros(3))
    np.testing.assert_array_equal(out["r"].numpy(), np.maximum(toy_data(), 0))
    assert "toy_data_layer" not in sys.modules


def test_every_missing_top_is_named_in_the_callers_syntax(tmp_path):
    with pytest.raises(errors.InputError,
                       match=r"layer 'input' \(Python, python_param.module = 'toy_data_layer', "
                             r"layer = 'ToyDataLayer'\) is a data layer written in Python.*"
                             r"the shapes of 'data', 'label' are not given; give them with "
                             r"input_shapes=\{'data': \(N, \.\.\.\), 'label': \(N, \.\.\.\)\}"):
        caffe_fx.compile(write(tmp_path, DATA + RELU))
    with pytest.raises(errors.InputError, match=r"the shapes of 'label' are not given; give "
                                                r"them with input_shapes=\{'label'"):
        caffe_fx.compile(write(tmp_path, DATA + RELU), input_shapes={"data": (3, 2, 3)})


def test_the_cli_names_its_own_flags(tmp_path, capsys):
    assert main(["info", write(tmp_path, DATA + RELU), "--input-shape", "data=3,2,3"]) == 1
    err = capsys.readouterr().err
    assert "the shapes of 'label' are not given; give them with --input-shape label=N,C,H,W" \
        in err, err
    assert main(["info", write(tmp_path, DATA + RELU), "--input-shape", "data=3,2,3",
                 "--input-shape", "label=3"]) == 0


def test_python_layers_with_bottoms_are_still_refused_and_only_they(tmp_path):
    with pytest.raises(errors.UnsupportedFieldError,
                       match=r"Python layers 'py' \(python_param.module = 'toy_scale_layer'\) "
                             r"run user code") as info:
        caffe_fx.compile(write(tmp_path, DATA + RELU + SCALE),
                         input_shapes={"data": (3, 2, 3), "label": (3,)})
    assert "toy_data_layer" not in str(info.value)


def test_trusted_compile_still_feeds_data_layers(tmp_path, monkeypatch):
    """trust_python_layers=True runs the layers with bottoms; the data layer stays an input
    (its module is never imported); the scale layer's `import caffe` is the facade's."""
    (tmp_path / "toy_scale_layer.py").write_text(TOY_SCALE)
    (tmp_path / "toy_data_layer.py").write_text("raise RuntimeError('imported')\n")
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, torch
        sys.path.insert(0, {str(tmp_path)!r})
        import caffe_fx
        assert "caffe" not in sys.modules
        gm = caffe_fx.compile({write(tmp_path, DATA + RELU + SCALE)!r},
                              input_shapes={{"data": (3, 2, 3), "label": (3,)}},
                              trust_python_layers=True)
        x = torch.linspace(-1, 1, 18).reshape(3, 2, 3)
        s = gm(data=x, label=torch.zeros(3))["s"]
        print(json.dumps({{"s": s.tolist(), "x": x.tolist(),
                           "caffe": sys.modules["caffe"].__name__,
                           "data_imported": "toy_data_layer" in sys.modules}}))
    """)
    got = _run(script)
    x = np.array(got["x"], np.float32)
    np.testing.assert_allclose(got["s"], 3 * np.maximum(x, 0), rtol=1e-6)
    assert got["caffe"] == "caffe_fx.pycaffe" and not got["data_imported"]


def test_the_facade_runs_python_data_layers(tmp_path):
    """caffe_fx.pycaffe.Net runs the data layer (its module does `import caffe` at the top,
    and nothing called install() first); backward runs the scale layer's own backward."""
    (tmp_path / "toy_data_layer.py").write_text(TOY_DATA)
    (tmp_path / "toy_scale_layer.py").write_text(TOY_SCALE)
    proto = write(tmp_path, "force_backward: true\n" + DATA + RELU + SCALE)
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(tmp_path)!r})
        import caffe_fx.pycaffe as facade
        assert "caffe" not in sys.modules
        net = facade.Net({proto!r}, facade.TEST)
        net.forward()
        net.blobs["s"].diff[...] = 1.0
        net.backward()
        print(json.dumps({{"data": net.blobs["data"].data.tolist(),
                           "label": net.blobs["label"].data.tolist(),
                           "s": net.blobs["s"].data.tolist(),
                           "rdiff": net.blobs["r"].diff.tolist(),
                           "type": type(net.layers[0]).__name__}}))
    """)
    got = _run(script)
    np.testing.assert_allclose(got["data"], toy_data(), rtol=1e-6)
    assert got["label"] == [0.0, 1.0, 2.0] and got["type"] == "ToyDataLayer"
    np.testing.assert_allclose(got["s"], 3 * np.maximum(toy_data(), 0), rtol=1e-6)
    np.testing.assert_array_equal(got["rdiff"], np.full((3, 2, 3), 3.0))


def _run(script: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- OICR

def _oicr() -> caffe_pb2.NetParameter:
    if not OICR_TRAIN.exists():
        pytest.skip(f"{OICR_TRAIN} is absent (../shared/clients holds the client code)")
    return text_format.Parse(OICR_TRAIN.read_text(), caffe_pb2.NetParameter())


def test_oicr_train_net_refuses_only_its_layers_with_bottoms(tmp_path):
    net = _oicr()
    data = [layer for layer in net.layer if layer.type == "Python" and not layer.bottom]
    assert [layer.python_param.layer for layer in data] == ["RoIDataLayer"]
    with pytest.raises(errors.CaffeFxError, match=r"'oicr_layer.layer'") as info:
        caffe_fx.compile(str(OICR_TRAIN), phase="train")
    assert "roi_data_layer" not in str(info.value)
    assert "roi_data_layer" not in sys.modules and "roi_data_layer.layer" not in sys.modules


def test_oicr_roi_data_layer_tops_are_inputs(tmp_path):
    """The convolutional trunk of OICR's train net (its data layer, conv1 to conv5)."""
    net = _oicr()
    keep = caffe_pb2.NetParameter()
    keep.name = net.name
    for layer in net.layer:
        keep.layer.add().CopyFrom(layer)
        if layer.name == "relu5":
            break
    path = tmp_path / "trunk.prototxt"
    path.write_text(text_format.MessageToString(keep))
    with pytest.raises(errors.InputError, match=r"layer 'data' \(Python, python_param.module = "
                                                r"'roi_data_layer.layer', layer = "
                                                r"'RoIDataLayer'\).*the shapes of 'data', "
                                                r"'rois', 'labels' are not given"):
        caffe_fx.compile(str(path), phase="train")
    gm = caffe_fx.compile(str(path), phase="train", input_shapes={
        "data": (1, 3, 224, 224), "rois": (8, 5), "labels": (1, 20)})
    info = gm.meta["caffe"]
    assert info.inputs == ["data", "rois", "labels"]
    assert info.blob_shapes["conv5"][:2] == (1, 512)
    assert "roi_data_layer" not in sys.modules


def test_a_trusted_solver_runs_python_data_layers(tmp_path, monkeypatch):
    """caffe_fx.Solver reads its batches: a trusted Python data layer runs in it (as in
    pycaffe's solver) instead of asking for shapes."""
    module = TOY_DATA.replace("import caffe\n", "import caffe_fx.pycaffe as caffe\n") \
        .replace("top[1].reshape(self.n)", "top[1].reshape(self.n, 1)") \
        .replace("np.arange(self.n)\n", "np.arange(self.n)[:, None]\n")
    (tmp_path / "toy_solver_data.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_solver_data", raising=False)
    body = (DATA.replace("toy_data_layer", "toy_solver_data")
            + 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
              'inner_product_param { num_output: 1 } }\n'
              'layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "label" }\n')
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{write(tmp_path, body)}"\nbase_lr: 0.1\nlr_policy: "fixed"\n'
                      'max_iter: 1\ndisplay: 0\n')
    s = caffe_fx.Solver(str(solver), trust_python_layers=True)
    s.step(1)
    assert "toy_solver_data" in sys.modules
    sys.modules.pop("toy_solver_data")
