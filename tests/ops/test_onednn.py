"""ops/onednn.py: the reordered weights of inference follow every change a parameter's
version counter sees, and forget()/use_prepacked() cover the writes it does not."""
import pytest
import torch

import caffe_fx
from caffe_fx.ops import onednn
from caffe_fx.ops.onednn import _CACHE

NET = ('layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 '
       'dim: 7 dim: 7 } } }\n'
       'layer { name: "conv" type: "Convolution" bottom: "x" top: "c" convolution_param { '
       'num_output: 4 kernel_size: 3 stride: 2 pad: 1 weight_filler { type: "gaussian" } '
       'bias_filler { type: "gaussian" } } }\n'
       'layer { name: "bn" type: "BatchNorm" bottom: "c" top: "c" }\n'
       'layer { name: "sc" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true '
       'filler { type: "gaussian" } bias_filler { type: "gaussian" } } }\n'
       'layer { name: "relu" type: "ReLU" bottom: "c" top: "c" }\n'
       'layer { name: "conv2" type: "Convolution" bottom: "c" top: "d" convolution_param { '
       'num_output: 2 kernel_size: 1 weight_filler { type: "gaussian" } } }\n')

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN")


@pytest.fixture
def nets():
    torch.manual_seed(0)  # the fillers draw from torch's generator
    gm = caffe_fx.compile(NET)
    gm.bn.mean.normal_(), gm.bn.variance.uniform_(0.5, 2), gm.bn.scale_factor.fill_(2.0)
    with torch.no_grad():
        gm.sc.weight.abs_()  # the ReLU keeps something of every channel
    plain = caffe_fx.compile(NET, fuse=False)
    plain.load_state_dict(gm.state_dict())
    onednn.use_prepacked(plain, False)
    return gm, plain


def _reference(net, x, d=None):
    """NET in float64 from the module's current tensors (or `d`, their float64 copies by
    state_dict name), written from Caffe's layers (conv_layer, batch_norm_layer with
    global statistics, scale_layer, relu_layer), with torch.nn.functional's float64
    kernels: not caffe_fx's ops."""
    if d is None:
        d = {k: v.detach().double() for k, v in net.state_dict().items()}
    y = torch.nn.functional.conv2d(x.double(), d["conv.weight"], d["conv.bias"], 2, 1)
    f = 0.0 if float(d["bn.scale_factor"]) == 0 else 1.0 / float(d["bn.scale_factor"])
    y = (y - (d["bn.mean"] * f).view(1, -1, 1, 1)) / torch.sqrt(
        d["bn.variance"] * f + 1e-5).view(1, -1, 1, 1)
    y = torch.relu(y * d["sc.weight"].view(1, -1, 1, 1) + d["sc.bias"].view(1, -1, 1, 1))
    return torch.nn.functional.conv2d(y, d["conv2.weight"], d["conv2.bias"])


def _check(gm, plain, x):
    """gm (prepacked) and plain (switched off) against the float64 reference, 1e-5 of
    its largest magnitude."""
    want = _reference(gm, x)
    torch.testing.assert_close(_reference(plain, x), want, rtol=0, atol=0)  # same weights
    with torch.no_grad():
        for net in (gm, plain):
            got = net(x=x)["d"].double()
            assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-5
    return got


def test_inference_reorders_once(nets):
    gm, plain = nets
    x = torch.randn(2, 3, 7, 7)
    _check(gm, plain, x)
    entry = _CACHE.get(gm.conv.weight)
    assert entry is not None and _CACHE.get(gm.conv2.weight) is not None
    _check(gm, plain, x)
    assert _CACHE.get(gm.conv.weight)[1] is entry[1]  # reused, not reordered again
    assert _CACHE.get(plain.conv.weight) is None  # switched off: the plain path


def test_reordered_weights_go_with_their_module():
    """The cache holds no module alive: its entries (reordered weights, the tensors they
    came from) go when the weight does; a new tensor at a reused address misses."""
    import gc
    import weakref

    gm, plain = caffe_fx.compile(NET), caffe_fx.compile(NET)
    onednn.use_prepacked(plain, False)
    assert plain.conv.weight in onednn._OFF
    with torch.no_grad():
        gm(x=torch.randn(2, 3, 7, 7))
    weight = weakref.ref(gm.conv.weight)
    address = id(gm.conv.weight)
    assert _CACHE.get(gm.conv.weight) is not None and address in _CACHE._items
    del gm
    gc.collect()
    assert weight() is None and address not in _CACHE._items
    stranger = torch.zeros(1)
    assert _CACHE.get(stranger) is None and stranger not in _CACHE
    onednn.use_prepacked(plain, True)  # _OFF forgets the same way
    assert plain.conv.weight not in onednn._OFF


def test_autograd_takes_the_plain_path(nets):
    gm, _ = nets
    gm(x=torch.randn(2, 3, 7, 7))["d"].sum().backward()
    assert _CACHE.get(gm.conv.weight) is None and gm.conv.weight.grad is not None


def test_changes_the_version_counter_sees_are_followed(nets):
    gm, plain = nets
    x = torch.randn(2, 3, 7, 7)
    before = _check(gm, plain, x)
    with torch.no_grad():
        for net in (gm, plain):
            net.conv.weight.mul_(-2)  # in place
            net.bn.variance.add_(1.0)  # a BatchNorm buffer folded into the weight
            net.sc.bias.sub_(0.5)
    assert not torch.allclose(_check(gm, plain, x), before)
    state = {k: torch.randn_like(v) if v.dtype.is_floating_point else v
             for k, v in gm.state_dict().items()}
    for k in ("bn.variance", "bn.scale_factor"):
        state[k] = state[k].abs() + 0.1
    gm.load_state_dict(state), plain.load_state_dict(state)
    _check(gm, plain, x)
    gm.conv2.weight = torch.nn.Parameter(torch.randn_like(gm.conv2.weight))  # a new tensor
    plain.conv2.weight = torch.nn.Parameter(gm.conv2.weight.detach().clone())
    _check(gm, plain, x)
    _check(gm, plain, torch.randn(1, 3, 9, 9))  # another input shape
    with torch.inference_mode():
        got = gm(x=x)["d"].double()
    want = _reference(gm, x)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-5


def test_writes_past_the_counter_need_forget(nets):
    gm, plain = nets
    x = torch.randn(2, 3, 7, 7)
    _check(gm, plain, x)
    for net in (gm, plain):
        net.conv.weight.data.mul_(3)  # `.data` has a counter of its own
    with torch.no_grad():
        stale = gm(x=x)["d"].double()
    want = _reference(gm, x)
    assert ((stale - want).abs().max() / want.abs().max()).item() > 1e-3  # the documented limit
    onednn.forget(gm)
    _check(gm, plain, x)
    onednn.use_prepacked(gm, False)
    for net in (gm, plain):
        net.conv.weight.detach().numpy()[:] *= -1  # NumPy view: no counter moves
    _check(gm, plain, x)
    onednn.use_prepacked(gm, True)
    _check(gm, plain, x)


def test_pycaffe_nets_never_keep_reordered_weights(tmp_path):
    import numpy as np

    import caffe_fx.pycaffe as caffe

    path = tmp_path / "net.prototxt"
    path.write_text(NET)
    net = caffe.Net(str(path), caffe.TEST)
    net.blobs["x"].data[...] = np.random.RandomState(0).randn(2, 3, 7, 7)
    net.params["bn"][2].data[...] = 1.0
    net.params["bn"][1].data[...] = 1.0
    first = net.forward()["d"].copy()
    net.params["conv2"][0].data[...] *= 2  # through Blob.data's NumPy view
    np.testing.assert_allclose(net.forward()["d"], 2 * first, rtol=1e-5, atol=1e-6)


def test_a_net_made_under_inference_mode_takes_the_plain_path():
    with torch.inference_mode():
        gm = caffe_fx.compile(NET)  # its parameters keep no version counter
        y = gm(x=torch.randn(2, 3, 7, 7))["d"]
    assert y.shape == (2, 2, 4, 4) and _CACHE.get(gm.conv.weight) is None


def test_a_replaced_storage_is_not_reused_under_the_key(nets):
    gm, plain = nets
    x = torch.randn(2, 3, 7, 7)
    _check(gm, plain, x)
    for _ in range(3):  # each new tensor could land where a freed one was, at version 0
        w = torch.randn_like(gm.conv2.weight)
        gm.conv2.weight.data = w
        plain.conv2.weight.data = w.clone()
        _check(gm, plain, x)


def test_torch_func_transforms_take_the_plain_path(nets):
    """vmap's and grad's wrapped tensors cannot enter oneDNN's raw ops, nor can vmap
    query memory formats: under torch.func the convolutions run torch's conv2d, NCHW."""
    gm, _ = nets
    x = torch.randn(2, 3, 7, 7)

    def rel(got, want):
        return ((got.double() - want).abs().max() / want.abs().max()).item()

    with torch.no_grad():
        batched = torch.func.vmap(lambda xi: gm(x=xi[None])["d"][0])(x)
    assert rel(batched, _reference(gm, x)) <= 1e-5
    params = dict(gm.named_parameters())
    grads = torch.func.grad(
        lambda p: torch.func.functional_call(gm, p, (x,))["d"].square().sum())(params)
    # The float64 reference's own autograd gives the parameters' expected gradients.
    d = {k: v.detach().double().requires_grad_(k in params)
         for k, v in gm.state_dict().items()}
    _reference(gm, x, d).square().sum().backward()
    for k, g in grads.items():
        assert rel(g, d[k].grad) <= 1e-5, k
