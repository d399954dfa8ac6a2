"""ops/onednn.py's InnerProduct: eager float32 CPU products run oneDNN's inner product,
forward and backward, equal to a float64 reference of Caffe's inner_product_layer
(top = bottom W^T + b; bottom_diff = top_diff W; weight_diff = top_diff^T bottom, or
bottom^T top_diff with `transpose`; bias_diff = the column sums); and every place that
must keep torch's matmul does (TorchScript, torch.func, autocast, double backward)."""
import pytest
import torch

import caffe_fx
from caffe_fx.ops import onednn

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")


def _net(transpose: bool, bias: bool) -> str:
    return ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 5 dim: 3 '
            'dim: 4 dim: 4 } } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
            f'inner_product_param {{ num_output: 7 transpose: {str(transpose).lower()} '
            f'bias_term: {str(bias).lower()} weight_filler {{ type: "gaussian" }} '
            'bias_filler { type: "gaussian" } } }\n')


def _reference(gm, x, top_diff):
    """Caffe's Forward_cpu/Backward_cpu in float64 from the module's tensors."""
    w = gm.ip.weight.detach().double()
    w_nk = w.t() if gm.ip.transpose else w  # (num_output, K)
    b = None if gm.ip.bias is None else gm.ip.bias.detach().double()
    x2 = x.double().reshape(x.shape[0], -1)
    g = top_diff.double()
    y = x2 @ w_nk.t() + (0 if b is None else b)
    grads = {"x": (g @ w_nk).reshape(x.shape),
             "weight": x2.t() @ g if gm.ip.transpose else g.t() @ x2}
    if b is not None:
        grads["bias"] = g.sum(0)
    return y, grads


def _rel(got, want):
    return float((got.double() - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_backward_match_caffes_formulas(transpose, bias, monkeypatch):
    torch.manual_seed(0)
    gm = caffe_fx.compile(_net(transpose, bias))
    calls = []
    real = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(onednn, "_product", lambda a, b: calls.append("bwd") or
                        real(a.contiguous(), b, None, "none", [], ""))
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    y = gm(x=x)["y"]
    assert y.grad_fn is not None and type(y.grad_fn).__name__ == "_InnerProductBackward"
    top_diff = torch.randn_like(y)
    y.backward(top_diff)
    assert calls == ["bwd", "bwd"]  # bottom diff and weight diff by oneDNN
    want_y, want = _reference(gm, x.detach(), top_diff)
    assert _rel(y.detach(), want_y) <= 1e-6
    assert _rel(x.grad, want["x"]) <= 1e-6
    assert gm.ip.weight.grad.shape == gm.ip.weight.shape
    assert _rel(gm.ip.weight.grad, want["weight"]) <= 1e-6
    if bias:
        assert _rel(gm.ip.bias.grad, want["bias"]) <= 1e-6
    with torch.no_grad():
        assert _rel(gm(x=x)["y"], want_y) <= 1e-6


def test_diffs_accumulate_and_double_backward_exists():
    torch.manual_seed(1)
    gm = caffe_fx.compile(_net(False, True))
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    for _ in range(2):  # Caffe's param diffs accumulate until cleared; .grad does too
        gm(x=x)["y"].sum().backward()
    once = torch.ones(5, 7, dtype=torch.float64).t() @ x.detach().double().reshape(5, -1)
    assert torch.allclose(gm.ip.weight.grad.double(), 2 * once, rtol=1e-5, atol=1e-5)
    # create_graph: the backward records torch's ops, so a second derivative exists.
    gm.zero_grad()
    (gx,) = torch.autograd.grad(gm(x=x)["y"].square().sum(), x, create_graph=True)
    gx.sum().backward()
    # The same second derivative from float64 autograd of torch's ops.
    wd = gm.ip.weight.detach().double().requires_grad_(True)
    xd = x.detach().double().reshape(5, -1).requires_grad_(True)
    yd = xd @ wd.t() + gm.ip.bias.detach().double()
    (gxd,) = torch.autograd.grad(yd.square().sum(), xd, create_graph=True)
    gxd.sum().backward()
    assert _rel(gm.ip.weight.grad, wd.grad) <= 1e-5


def test_paths_that_keep_torchs_matmul():
    torch.manual_seed(2)
    gm = caffe_fx.compile(_net(True, True))
    x = torch.randn(5, 3, 4, 4)
    with torch.no_grad():
        want, _ = _reference(gm, x, torch.zeros(5, 7))
        assert _rel(torch.jit.script(gm)(x=x)["y"], want) <= 1e-6
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = gm(x=x)["y"]
        assert low.dtype == torch.bfloat16  # autocast's cast, not skipped by oneDNN
    params = dict(gm.named_parameters())
    grads = torch.func.grad(
        lambda p: torch.func.functional_call(gm, p, (x,))["y"].square().sum())(params)
    _, want_grads = _reference(gm, x, 2 * want)  # d(sum y^2)/dy = 2y
    assert sorted(grads) == ["ip.bias", "ip.weight"]
    for k, g in grads.items():
        assert _rel(g, want_grads[k.split(".")[1]]) <= 1e-6, k
    with torch.no_grad():
        batched = torch.func.vmap(lambda xi: gm(x=xi[None])["y"][0])(x)
    assert _rel(batched, want) <= 1e-6
