"""SSD's Permute, Normalize and PriorBox against weiliu89/caffe (branch ssd), run for real:
tests/golden/ssd/*.npz (tools/make_ssd_goldens.py, CAFFE_ORACLE_FORK=ssd) hold the fork's
tops, bottom diffs and, for Normalize, its scale and the scale's diff.  compile() runs each
case's prototxt with the fork's own field names.

Normalize's backward with a per-channel scale is the fork's, not the derivative of its
forward (forks/FACTS.md): the goldens show it, and a test shows autograd's differs.  Where
the two agree (a shared scale) gradcheck checks the op in float64."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import caffe_fx
from caffe_fx.errors import CaffeFxError, ShapeError
from caffe_fx.ops import ssd as S
from tests.golden.harness import assert_like_fork as _close, load_record as _load, relative_error

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ssd"
CASES = sorted(GOLDEN.glob("*.npz"))


def _run(rec: dict[str, np.ndarray]):
    """Compiles the case with the fork's params, runs it forward and, on the seeded top
    diffs, backward.  Returns (tops, {input: grad}, {"pdiff/<layer>/<i>": grad})."""
    weights: dict[str, list[np.ndarray]] = {}
    for key in sorted(k for k in rec if k.startswith("param/")):
        _, layer, i = key.split("/")
        weights.setdefault(layer, []).append(rec[key])
        assert len(weights[layer]) == int(i) + 1
    inputs = {k[len("input/"):]: torch.from_numpy(v).requires_grad_(True)
              for k, v in rec.items() if k.startswith("input/")}
    tops = [k[len("data/"):] for k in rec if k.startswith("data/")]
    gm = caffe_fx.compile(str(rec["prototxt"]), weights=weights or None, outputs=tops)
    out = gm(**inputs)
    seeds = [(out[t], torch.from_numpy(rec[f"topdiff/{t}"])) for t in tops
             if f"topdiff/{t}" in rec]
    if seeds:
        torch.autograd.backward([o for o, _ in seeds], [s for _, s in seeds])
    params = dict(gm.named_parameters())
    pgrads = {f"pdiff/{spec.layer}/{spec.blob_index}": params[name].grad
              for name, spec in gm.meta["caffe"].param_specs.items() if name in params}
    return ({t: out[t].detach().numpy() for t in tops},
            {k: v.grad for k, v in inputs.items()}, pgrads)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matches_the_fork_forward_and_backward(path: Path) -> None:
    rec = _load(path)
    tol = 1e-4 if path.stem.startswith("net_") else 1e-5  # a whole net, or one layer
    tops, grads, pgrads = _run(rec)
    for top, ours in tops.items():
        _close(ours, rec[f"data/{top}"], f"{path.stem}: top {top}", tol)
    for key in (k for k in rec if k.startswith("diff/")):
        blob = key[len("diff/"):]
        ours = grads[blob]
        _close(np.zeros_like(rec[key]) if ours is None else ours.numpy(), rec[key],
               f"{path.stem}: diff of {blob}", tol)
    assert set(pgrads) == {k for k in rec if k.startswith("pdiff/")}
    for key, ours in pgrads.items():
        _close(ours.numpy(), rec[key], f"{path.stem}: {key}", tol)


def test_goldens_cover_the_cases() -> None:
    names = {p.stem for p in CASES}
    assert len(names) == 15
    assert {"permute_0231", "normalize_pixel_channel_scale", "prior_box_ssd300",
            "net_ssd_head"} <= names


# ---------------------------------------------------------------- Normalize

def _plain_normalize(x: torch.Tensor, scale: torch.Tensor, across: bool, eps: float):
    x4 = x.reshape(list(x.shape) + [1] * (4 - x.dim()))
    dims = [1, 2, 3] if across else [1]
    y = x4 / ((x4 * x4).sum(dims, keepdim=True) + eps).sqrt()
    s = scale.reshape([1, -1, 1, 1]) if scale.dim() else scale
    return (y * s).reshape(x.shape)


def test_per_channel_backward_is_the_forks_not_autograds() -> None:
    """With a per-channel scale the fork's bottom diff leaves the scales out of the dot
    product; autograd's derivative of the same forward differs from the golden."""
    rec = _load(GOLDEN / "normalize_pixel_channel_scale.npz")
    x = torch.from_numpy(rec["input/data"]).double().requires_grad_(True)
    scale = torch.from_numpy(rec["param/normalize_pixel_channel_scale/0"]).double()
    _plain_normalize(x, scale, False, 1e-10).backward(
        torch.from_numpy(rec["topdiff/out"]).double())
    assert relative_error(x.grad.numpy(), rec["diff/data"]) > 1e-2
    _, grads, _ = _run(rec)
    _close(grads["data"].numpy(), rec["diff/data"], "Caffe's backward")


@pytest.mark.parametrize("across", [True, False])
def test_shared_scale_backward_is_the_derivative(across: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(1.7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, s: S.normalize(a, s, across, 1e-10),
                                    (x, scale))


def test_per_channel_scale_gradient_is_the_derivative() -> None:
    """Only the bottom diff departs from autograd: the scale's diff, sum(top td) / scale,
    is the derivative."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64)
    scale = torch.rand(3, generator=g, dtype=torch.float64).add(0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: S.normalize(x, s, False, 1e-10), (scale,))


def test_normalize_in_place_is_refused() -> None:
    net = ('input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
           'layer { name: "n" type: "Normalize" bottom: "data" top: "data" }\n')
    with pytest.raises(CaffeFxError, match=r"layer 'n' \(Normalize\) cannot work in place"):
        caffe_fx.compile(net)


def test_normalize_five_axes_is_refused() -> None:
    net = ('input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 dim: 2 }\n'
           'layer { name: "n" type: "Normalize" bottom: "data" top: "y" }\n')
    with pytest.raises(ShapeError, match=r"layer 'n' \(Normalize\).*allowed: 2 to 4 axes"):
        caffe_fx.compile(net)


# ---------------------------------------------------------------- PriorBox

def test_prior_box_truncates_sizes_and_orders_priors_per_location() -> None:
    """min_size 20.9 gives boxes 20 wide (the fork's `int min_size_`) and max_size 33 then
    sqrt(20 * 33); per min_size: the square box, the sqrt(min * max) box, then the ratios
    in the order given, each once (2, 3, and 2 again dropped; flip false), for each
    location in turn (forks/FACTS.md)."""
    rec = _load(GOLDEN / "prior_box_two_sizes_noflip.npz")
    boxes = rec["data/prior"][0, 0].reshape(3, 2, 8, 4)  # H, W, priors, corners; no clip
    s2, s3 = np.sqrt(2), np.sqrt(3)
    expected = [10, np.sqrt(10 * 15), 10 * s2, 10 * s3, 20, np.sqrt(20 * 33), 20 * s2, 20 * s3]
    for h in range(3):
        for w in range(2):
            widths = (boxes[h, w, :, 2] - boxes[h, w, :, 0]) * 24  # the image is 24 wide
            np.testing.assert_allclose(widths, expected, rtol=2e-5)
            centre = (boxes[h, w, :, 2] + boxes[h, w, :, 0]) / 2 * 24
            np.testing.assert_allclose(centre, (w + 0.3) * 8, rtol=1e-5)  # step 8, offset
    np.testing.assert_array_equal(rec["data/prior"][0, 1], np.float32(0.2))
    ours, _, _ = _run(rec)
    _close(ours["prior"], rec["data/prior"], "PriorBox")


def _prior_net(params: str, bottoms: str = 'bottom: "feat" bottom: "data"') -> str:
    return ('input: "feat" input_shape { dim: 1 dim: 2 dim: 3 dim: 4 }\n'
            'input: "data" input_shape { dim: 1 dim: 3 dim: 30 dim: 40 }\n'
            'layer { name: "p" type: "PriorBox" %s top: "prior"\n'
            '  prior_box_param { %s } }\n' % (bottoms, params))


@pytest.mark.parametrize("params, message", [
    ("", r"prior_box_param.min_size"),
    ("min_size: 10 max_size: 5", r"max_size\[0\].*max_size > min_size"),
    ("min_size: 10 max_size: 20 max_size: 30", r"one max_size per min_size"),
    ("min_size: 10 variance: 0.1 variance: 0.2", r"variance.*4 values"),
    ("min_size: 10 img_size: 30 img_h: 20 img_w: 20", r"either img_size or img_h/img_w"),
    ("min_size: 10 step: 8 step_h: 4", r"either step or step_h/step_w"),
    ("min_size: 10 img_h: 20", r"img_w.*img_w > 0"),
    ("min_size: inf", r"min_size\[0\] = inf.*0 < min_size\[0\] < 2.14748e\+09"),
    ("min_size: 10 aspect_ratio: 0", r"aspect_ratio\[0\] = 0.*aspect_ratio\[0\] > 0"),
    ("min_size: 10 aspect_ratio: nan", r"aspect_ratio\[0\] = nan"),
])
def test_prior_box_refuses_what_the_fork_checks(params: str, message: str) -> None:
    with pytest.raises(CaffeFxError, match=r"layer 'p' \(PriorBox\)") as e:
        caffe_fx.compile(_prior_net(params))
    assert e.match(message)


def test_prior_box_needs_the_image_without_img_size() -> None:
    with pytest.raises(ShapeError, match=r"unless img_size or img_h/img_w is given"):
        caffe_fx.compile(_prior_net("min_size: 10", 'bottom: "feat"'))


def test_prior_box_follows_the_runtime_shapes() -> None:
    """Caffe reshapes before every forward: other feature or image sizes give their own
    priors (shape freedom), the same as a net compiled at those sizes."""
    gm = caffe_fx.compile(_prior_net("min_size: 10 aspect_ratio: 2"))
    other = gm(feat=torch.zeros(1, 2, 5, 6), data=torch.zeros(1, 3, 50, 60))["prior"]
    again = caffe_fx.compile(_prior_net("min_size: 10 aspect_ratio: 2").replace(
        "dim: 1 dim: 2 dim: 3 dim: 4", "dim: 1 dim: 2 dim: 5 dim: 6").replace(
        "dim: 30 dim: 40", "dim: 50 dim: 60"))
    expected = again(feat=torch.zeros(1, 2, 5, 6), data=torch.zeros(1, 3, 50, 60))["prior"]
    assert other.shape == (1, 2, 5 * 6 * 3 * 4)
    torch.testing.assert_close(other, expected, rtol=0, atol=0)


@pytest.mark.parametrize("prototxt, priors", [
    ("Shinung+gpu-rest-engine/models/VGGNet/VOC0712/SSD_300x300/deploy.prototxt", 8732),
    ("chuanqi305+MobileNet-SSD/voc/MobileNetSSD_deploy.prototxt", 1917)])
def test_published_ssd_nets_compile_to_their_priors(shared_models, prototxt, priors) -> None:
    """The heads that feed DetectionOutput: SSD300 has 8732 priors (the SSD paper),
    MobileNet-SSD at 300 x 300 1917; four locations and their variances each."""
    gm = caffe_fx.compile(shared_models / prototxt,
                          outputs=["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"])
    shapes = gm.meta["caffe"].blob_shapes
    assert shapes["mbox_priorbox"] == (1, 2, priors * 4)
    assert shapes["mbox_loc"] == (1, priors * 4)
    assert shapes["mbox_conf_flatten"] == (1, priors * 21)  # VOC: 20 classes + background


# ---------------------------------------------------------------- Permute

def test_permute_identity_is_no_op() -> None:
    gm = caffe_fx.compile('input: "data" input_shape { dim: 2 dim: 3 }\n'
                          'layer { name: "p" type: "Permute" bottom: "data" top: "out"\n'
                          '  permute_param { order: 0 } }\n')
    assert "permute" not in gm.code


@pytest.mark.parametrize("order, message", [("order: 3", r"order\[0\] = 3.*0 to 2"),
                                            ("order: 1 order: 1", r"order\[1\] = 1.*once")])
def test_permute_refuses_bad_orders(order: str, message: str) -> None:
    with pytest.raises(CaffeFxError, match=message):
        caffe_fx.compile('input: "data" input_shape { dim: 2 dim: 3 dim: 4 }\n'
                         'layer { name: "p" type: "Permute" bottom: "data" top: "out"\n'
                         f'  permute_param {{ {order} }} }}\n')


# ---------------------------------------------------------------- script, export, compile

NET = """
input: "data" input_shape { dim: 2 dim: 3 dim: 12 dim: 12 }
layer { name: "norm" type: "Normalize" bottom: "data" top: "norm"
  norm_param { across_spatial: false channel_shared: false
               scale_filler { type: "constant" value: 20 } } }
layer { name: "perm" type: "Permute" bottom: "norm" top: "perm"
  permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "prior" type: "PriorBox" bottom: "norm" bottom: "data" top: "prior"
  prior_box_param { min_size: 4 max_size: 9 aspect_ratio: 2 flip: true clip: true
                    variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }
"""


def test_script_export_and_compile_give_the_same_values() -> None:
    gm = caffe_fx.compile(NET)
    x = torch.randn(2, 3, 12, 12)
    ours = gm(data=x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation
        scripted = torch.jit.script(gm)(data=x)
    exported = torch.export.export(gm, (), {"data": x}).module()(data=x)
    compiled = torch.compile(gm, fullgraph=True)(data=x)
    for other in (scripted, exported):
        for blob in ("perm", "prior"):
            torch.testing.assert_close(other[blob], ours[blob], rtol=0, atol=0)
    # Inductor fuses the norm's sum and divisions: a float rounding apart.
    torch.testing.assert_close(compiled["perm"], ours["perm"], rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(compiled["prior"], ours["prior"], rtol=0, atol=0)


def test_torch_compile_backward_matches_eager() -> None:
    gm = caffe_fx.compile(NET)
    x = torch.randn(2, 3, 12, 12, requires_grad=True)
    seed = torch.randn(2, 12, 12, 3)
    gm(data=x)["perm"].backward(seed)
    eager = x.grad.clone()
    x.grad = None
    torch.compile(gm, backend="aot_eager")(data=x)["perm"].backward(seed)
    torch.testing.assert_close(x.grad, eager, rtol=1e-6, atol=1e-6)


def test_scale_diff_reads_the_top_after_an_in_place_relu() -> None:
    """The fork's scale diff is sum(top td) / scale with the top as an in-place ReLU left
    it; the un-rectified top would give another diff (and compile() runs that ReLU in
    place, torch.relu_, on the Normalize module's output)."""
    rec = _load(GOLDEN / "net_normalize_inplace_relu.npz")
    x = torch.from_numpy(rec["input/data"]).double()
    scale = torch.from_numpy(rec["param/norm/0"]).double()
    top = _plain_normalize(x, scale, False, 1e-10)
    td = torch.from_numpy(rec["topdiff/norm"]).double()
    unrectified = ((top * td).sum([0, 2, 3]) / scale).numpy()
    assert relative_error(unrectified, rec["pdiff/norm/0"]) > 0.1
    gm = caffe_fx.compile(str(rec["prototxt"]), weights={"norm": [rec["param/norm/0"]]})
    assert "torch.relu_(norm)" in gm.code
    _, _, pgrads = _run(rec)
    _close(pgrads["pdiff/norm/0"].numpy(), rec["pdiff/norm/0"], "scale diff")
