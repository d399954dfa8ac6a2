"""compile()'s fused Convolution -> BatchNorm -> Scale -> ReLU chains (lowering/fuse.py,
ops/fused.py) against real Caffe, and what the fusion must keep: autograd's values,
TorchScript, torch.export, fuse=False."""
import pytest
import torch

import caffe_fx
from caffe_fx.ops.fused import conv_bn_scale_relu
from tests.golden.harness import (assert_matches, cases_for, golden_inputs,
                                  golden_weights, ids, load_record, relative_error)

CASES = cases_for("ConvChain")
FUSED = {"fusion-resnet_stem": 1, "fusion-shortcut_eltwise": 2, "fusion-depthwise": 2,
         "fusion-shared_top": 1, "fusion-conv_relu": 3, "fusion-not_in_place": 1}


def _load(path):
    rec = load_record(path)
    return str(rec["prototxt"]), golden_weights(rec), golden_inputs(rec), rec


def _case(name):
    return next(p for p in CASES if p.stem == f"fusion-{name}")


def _fused_nodes(gm):
    """The fused chains: conv_bn_scale_relu nodes, and convolutions called with relu=True
    (a Convolution -> ReLU pair)."""
    return [n for n in gm.graph.nodes if n.target is conv_bn_scale_relu
            or (n.op == "call_module" and n.kwargs.get("relu") is True)]


def test_cases_exist():
    assert sorted(p.stem for p in CASES) == sorted(FUSED)


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_fused_chains_match_caffe(path):
    # harness: compile() (fuse=True) under no_grad, every blob Caffe keeps, 1e-5.
    assert_matches(path)
    proto, weights, _, _ = _load(path)
    assert len(_fused_nodes(caffe_fx.compile(proto, weights))) == FUSED[path.stem]
    assert not _fused_nodes(caffe_fx.compile(proto, weights, fuse=False))


def test_fused_node_reads_the_modules_tensors():
    proto, weights, inputs, rec = _load(_case("resnet_stem"))
    gm = caffe_fx.compile(proto, weights)
    (node,) = _fused_nodes(gm)
    assert node.name == "relu_conv1" and node.kwargs["relu"] is True  # the end's name
    assert node.kwargs["layers"] == "conv1,bn_conv1,scale_conv1,relu_conv1"
    assert [a.target for a in node.args[1:]] == [
        "conv1.weight", "conv1.bias", "bn_conv1.mean", "bn_conv1.variance",
        "bn_conv1.scale_factor", "scale_conv1.weight", "scale_conv1.bias"]
    # The state_dict keeps Caffe's layer names.
    assert set(gm.state_dict()) == set(caffe_fx.compile(proto, weights, fuse=False)
                                       .state_dict())


def test_conv_relu_is_the_convs_own_node():
    proto, weights, inputs, rec = _load(_case("conv_relu"))
    gm = caffe_fx.compile(proto, weights)
    nodes = _fused_nodes(gm)
    assert [(n.name, n.target, n.meta["caffe_layers"]) for n in nodes] == [
        ("r1", "c1", ["c1", "r1"]), ("r2", "c2", ["c2", "r2"]), ("out", "c3", ["c3", "out"])]
    assert "self.c1(data, relu = True)" in gm.code
    assert not [n for n in gm.graph.nodes if n.target in (torch.relu, torch.relu_)]
    # The ReLU's top "r2" is never an output here; asked for, c2 and r2 stay apart.
    kept = caffe_fx.compile(proto, weights, outputs=["c2", "r2", "out"])
    assert [n.meta["caffe_layers"] for n in _fused_nodes(kept)] == [["c1", "r1"],
                                                                   ["c3", "out"]]
    with torch.no_grad():
        got = kept(**inputs)
    for blob in ("c2", "r2", "out"):
        assert relative_error(got[blob].numpy(), rec[f"data/{blob}"]) <= 1e-5


def test_shared_top_is_not_fused():
    proto, weights, _, _ = _load(_case("shared_top"))
    gm = caffe_fx.compile(proto, weights)
    (node,) = _fused_nodes(gm)
    assert node.kwargs["layers"] == "d,sd" and node.args[3] is None  # no BatchNorm
    kept = {n.target for n in gm.graph.nodes if n.op == "call_module"}
    assert {"c", "bn", "s"} <= kept


@pytest.mark.parametrize("outputs, layers", [
    (["s"], "conv,bn,sc"),  # nothing reads c or b but the next layer
    (["b", "s"], "conv,bn"),  # b is an output: the chain ends there
    (["c", "s"], None),  # c is an output: no BatchNorm or Scale follows alone
])
def test_an_output_ends_the_chain(outputs, layers):
    proto, weights, inputs, rec = _load(_case("not_in_place"))
    gm = caffe_fx.compile(proto, weights, outputs=outputs)
    nodes = _fused_nodes(gm)
    assert [n.kwargs["layers"] for n in nodes] == ([layers] if layers else [])
    with torch.no_grad():
        got = gm(**inputs)
    assert sorted(got) == sorted(outputs)
    for blob in outputs:
        assert relative_error(got[blob].numpy(), rec[f"data/{blob}"]) <= 1e-5, blob


@pytest.mark.parametrize("path", CASES, ids=ids(CASES))
def test_autograd_is_each_layers_own(path):
    """Under autograd the fused node computes each layer as its module does: the same
    values and gradients as fuse=False, bit for bit."""
    proto, weights, inputs, _ = _load(path)
    grads = []
    for fuse in (True, False):
        gm = caffe_fx.compile(proto, weights, fuse=fuse)
        x = inputs["data"].clone().requires_grad_(True)
        out = gm(data=x)
        sum(v.sum() * (i + 1) for i, v in enumerate(out.values())).backward()
        grads.append([x.grad] + [p.grad for _, p in sorted(gm.named_parameters())]
                     + [v.detach() for v in out.values()])
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_fused_net_scripts_and_exports():
    proto, weights, inputs, rec = _load(_case("shortcut_eltwise"))
    gm = caffe_fx.compile(proto, weights)
    with torch.no_grad():
        want = gm(**inputs)["sum"]
    scripted = torch.jit.script(gm)
    with torch.no_grad():
        got = scripted(**inputs)["sum"]
    assert relative_error(got.numpy(), rec["data/sum"]) <= 1e-5
    ep = torch.export.export(gm, (), {k: v for k, v in inputs.items()})
    got = ep.module()(**inputs)["sum"]
    assert relative_error(got.detach().numpy(), rec["data/sum"]) <= 1e-5
    assert relative_error(want.numpy(), rec["data/sum"]) <= 1e-5


def test_wrong_channels_name_the_conv():
    proto, weights, inputs, _ = _load(_case("resnet_stem"))
    gm = caffe_fx.compile(proto, weights)
    with pytest.raises(caffe_fx.errors.ShapeError,
                       match=r"layer 'conv1' \(Convolution\): bottom of shape \[2, 3, 9, 9\]; "
                             r"the weight takes 4-D bottoms with 4 channels"):
        with torch.no_grad():
            gm(data=torch.zeros(2, 3, 9, 9))
