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
         "fusion-shared_top": 1, "fusion-conv_relu": 3, "fusion-not_in_place": 1,
         "fusion-residual": 6, "fusion-residual_kept": 2}


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


@pytest.mark.parametrize("name, top", [("shortcut_eltwise", "sum"), ("residual", "s3")])
def test_fused_net_scripts_and_exports(name, top):
    proto, weights, inputs, rec = _load(_case(name))
    gm = caffe_fx.compile(proto, weights)
    with torch.no_grad():
        want = gm(**inputs)[top]
    scripted = torch.jit.script(gm)
    with torch.no_grad():
        got = scripted(**inputs)[top]
    assert relative_error(got.numpy(), rec[f"data/{top}"]) <= 1e-5
    ep = torch.export.export(gm, (), {k: v for k, v in inputs.items()})
    got = ep.module()(**inputs)[top]
    assert relative_error(got.detach().numpy(), rec[f"data/{top}"]) <= 1e-5
    assert relative_error(want.numpy(), rec[f"data/{top}"]) <= 1e-5


def _sums(gm):
    return [(n.name, n.kwargs["layers"], n.kwargs["add"].name, n.kwargs["add_bottom"],
             n.kwargs.get("add_in_place", False))
            for n in gm.graph.nodes if n.target is conv_bn_scale_relu and "add" in n.kwargs]


class _Values(torch.fx.Interpreter):
    """Runs the GraphModule node by node, keeping each node's storage address."""

    def run_node(self, n):
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            self.addresses[n.name] = out.data_ptr()
        return out


def _addresses(gm, inputs):
    run = _Values(gm)
    run.addresses = {}
    with torch.no_grad():
        out = run.run(*inputs.values())
    return out, run.addresses


def test_residual_sums_run_inside_the_convolution():
    """ResNet's blocks: each closing sum inside the last convolution of its branch, written
    into the shortcut's memory where nothing reads the shortcut again; values equal to
    Caffe's, the same on every call."""
    proto, weights, inputs, rec = _load(_case("residual"))
    gm = caffe_fx.compile(proto, weights)
    assert _sums(gm) == [("r1", "c,bn_c,scale_c,s1,r1", "relu_a", 0, True),
                         ("r2", "e,bn_e,scale_e,s2,r2", "r1", 1, True),
                         ("r3", "f,bn_f,scale_f,s3,r3", "r2", 0, False)]
    assert not [n for n in gm.graph.nodes if n.target in (torch.relu, torch.relu_)]
    out, at = _addresses(gm, inputs)
    # r1 and r2 live in a's memory; r3 (its conv reads r2) has its own.
    assert at["r1"] == at["relu_a"] and at["r2"] == at["relu_a"] and at["r3"] != at["r2"]
    assert relative_error(out["s3"].numpy(), rec["data/s3"]) <= 1e-5
    with torch.no_grad():
        first, again = gm(**inputs)["s3"], gm(**inputs)["s3"]
    assert torch.equal(first, again) and torch.equal(first, out["s3"])
    # fuse=False: the Eltwise and ReLU nodes stay.
    plain = caffe_fx.compile(proto, weights, fuse=False)
    assert not _sums(plain)
    with torch.no_grad():
        assert relative_error(plain(**inputs)["s3"].numpy(), rec["data/s3"]) <= 1e-5


def test_residual_sums_that_must_not_overwrite():
    """A sum with the net's input, and one whose shortcut a later layer reads, are fused
    but make a tensor of their own; a sum with coefficients and a product stay apart."""
    proto, weights, inputs, rec = _load(_case("residual_kept"))
    gm = caffe_fx.compile(proto, weights)
    assert _sums(gm) == [("s1", "a,bn_a,scale_a,s1", "data", 0, False),
                         ("s2", "b,s2", "s1", 1, False)]
    data = inputs["data"].clone()
    out, at = _addresses(gm, inputs)
    assert torch.equal(inputs["data"], data)
    assert len({at["data"], at["s1"], at["s2"]}) == 3
    for top in ("pool", "s4"):
        assert relative_error(out[top].numpy(), rec[f"data/{top}"]) <= 1e-5, top


def test_a_sum_of_mismatched_shapes_names_the_eltwise():
    """At compile time the shapes agree; a 9x9 input makes the pooled bottom 5x5 and the
    convolution's 4x4: the fused node reports Caffe's Eltwise check."""
    proto = ('input: "data" input_shape { dim: 1 dim: 4 dim: 8 dim: 8 }\n'
             'layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n'
             '  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }\n'
             'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
             '  convolution_param { num_output: 4 kernel_size: 2 stride: 2 } }\n'
             'layer { name: "s" type: "Eltwise" bottom: "p" bottom: "c" top: "s" }\n')
    gm = caffe_fx.compile(proto)
    assert _sums(gm) == [("s", "c,s", "p", 0, True)]  # a pooled tensor: may overwrite
    with torch.no_grad():
        assert gm(data=torch.ones(1, 4, 8, 8))["s"].shape == (1, 4, 4, 4)
        with pytest.raises(caffe_fx.errors.ShapeError,
                           match=r"layer 's' \(Eltwise\): bottom\[1\] of shape \[1, 4, 4, 4\] "
                                 r"does not match bottom\[0\] of shape \[1, 4, 5, 5\]"):
            gm(data=torch.ones(1, 4, 9, 9))


def test_wrong_channels_name_the_conv():
    proto, weights, inputs, _ = _load(_case("resnet_stem"))
    gm = caffe_fx.compile(proto, weights)
    with pytest.raises(caffe_fx.errors.ShapeError,
                       match=r"layer 'conv1' \(Convolution\): bottom of shape \[2, 3, 9, 9\]; "
                             r"the weight takes 4-D bottoms with 4 channels"):
        with torch.no_grad():
            gm(data=torch.zeros(2, 3, 9, 9))
