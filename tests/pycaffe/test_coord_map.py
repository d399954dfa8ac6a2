"""caffe_fx.pycaffe.coord_map: crop() makes the Crop layers real pycaffe's makes.

The nets that crop() builds (tests/pycaffe/net_spec_scripts.py fcn8s_crop and
coord_map_crops) are compared text for text with real pycaffe's by test_net_spec.py;
here: the published FCN-8s's crops, and the failures, which real pycaffe reports as bare
AssertionError, KeyError or AttributeError (tests/golden/net_spec/errors.json records
them) and caffe_fx as CoordMapError subclasses that say what was found.
"""
# ruff: noqa: C408  (dict(...) keywords are how pycaffe users write layer fields)
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format

from caffe_fx.errors import (
    CaffeFxError,
    CoordMapAxisError,
    CoordMapError,
    CoordMapUndefinedError,
    CoordMapUnreachableError,
)
from caffe_fx.proto import caffe_pb2
from caffe_fx.pycaffe import coord_map
from caffe_fx.pycaffe.coord_map import coord_map_from_to, crop
from caffe_fx.pycaffe.net_spec import L, NetSpec, P
from tests.pycaffe.net_spec_scripts import SCRIPTS
from tests.pycaffe.test_net_spec import CAFFE

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "net_spec"
REAL = {name: outcome for name, outcome in
        json.loads((GOLDEN / "errors.json").read_text()).items()
        if name.startswith("error_crop_")}

# script -> (our class, our message); the class real pycaffe raised is in REAL.
FAILURES = {
    "error_crop_scale_mismatch": (
        CoordMapError, (r"crop\(the Input layer's top 0, the Pooling \(pool=0, kernel_size=2, "
        r"stride=2, pad=0\) layer's top 0\): scale mismatch on crop \(a = \[0.5\]\)")),
    "error_crop_negative_offset": (
        CoordMapError, (r"cannot crop negative offset \(b = \[1.\]\): top_to starts before "
                       r"top_from")),
    "error_crop_noninteger_offset": (CoordMapError,
                                     r"cannot crop noninteger offset \(b = \[-0.5\]\)"),
    "error_crop_unconnected": (
        CoordMapUnreachableError,
        (r"Could not compute map between tops; are they connected by spatial layers\? the "
        r"Input layer's top 0 and the Convolution \(.*\) layer's top 0 share no ancestor")),
    "error_crop_axis_mismatch": (CoordMapAxisError,
                                 r"maps over different axes meet \(axis 2 and axis 1\)"),
    "error_crop_pass_through_only": (CoordMapError, r"only pass-through layers lie between"),
    "error_crop_legacy_fields": (
        CoordMapError, (r"Convolution \(num_output=1, kernel_size=3, pad_h=1, pad_w=1\) sets "
                       r"pad_h, pad_w: cropping does not support legacy _h/_w params \(as in "
                       r"pycaffe\); the coordinate map reads kernel_size")),
    # Real pycaffe: KeyError 'kernel_size', before its check of the legacy fields.
    "error_crop_no_kernel_size": (CoordMapError, (r"Convolution \(num_output=1, kernel_h=3, "
                                                 r"kernel_w=3\) sets kernel_h, kernel_w: ")),
    # Real pycaffe: KeyError 'kernel_size'.  A global pooling has no map, so the walk
    # stops there, as at any layer without one.
    "error_crop_global_pooling": (CoordMapUnreachableError, r"share no ancestor"),
}


def test_every_crop_failure_is_recorded_from_real_pycaffe():
    assert sorted(FAILURES) == sorted(REAL)
    assert REAL["error_crop_axis_mismatch"]["exception"] == "AxisMismatchException"
    assert REAL["error_crop_unconnected"]["exception"] == "RuntimeError"


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_crop_failure_says_what_it_found(name):
    cls, message = FAILURES[name]
    with pytest.raises(cls, match=message) as info:
        SCRIPTS[name](CAFFE)
    assert isinstance(info.value, CaffeFxError)
    if REAL[name]["exception"] == "RuntimeError":
        assert isinstance(info.value, RuntimeError)
    if REAL[name]["exception"] not in ("KeyError", "AttributeError"):
        # pycaffe's own texts stay in ours (AxisMismatchException has none).
        assert REAL[name]["message"] in str(info.value)


def test_pycaffe_exception_names_catch_ours():
    assert coord_map.UndefinedMapException is CoordMapUndefinedError
    assert coord_map.AxisMismatchException is CoordMapAxisError
    with pytest.raises(coord_map.UndefinedMapException, match="InnerProduct layers have no"):
        coord_map.coord_map(L.InnerProduct(L.Input(), num_output=2).fn)
    with pytest.raises(coord_map.AxisMismatchException):
        SCRIPTS["error_crop_axis_mismatch"](CAFFE)


def test_published_fcn8s_crops(shared_models):
    """voc-fcn8s/train.prototxt, made by FCN's net.py with real pycaffe's crop(): ours,
    from the same net written with net_spec, has the same Crop layers."""
    published = text_format.Parse(
        (shared_models / "shelhamer+fcn.berkeleyvision.org" / "voc-fcn8s" /
         "train.prototxt").read_text(), caffe_pb2.NetParameter())
    ours = SCRIPTS["fcn8s_crop"](CAFFE)

    def crops(net: caffe_pb2.NetParameter) -> list:
        return [(la.name, list(la.bottom), la.crop_param.axis, list(la.crop_param.offset))
                for la in net.layer if la.type == "Crop"]
    assert crops(ours) == crops(published) == [
        ("score_pool4c", ["score_pool4", "upscore2"], 2, [5]),
        ("score_pool3c", ["score_pool3", "upscore_pool4"], 2, [9]),
        ("score", ["upscore8", "data"], 2, [31])]


def test_map_from_to_is_the_affine_map_between_the_tops():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 64, 64]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, stride=2, pad=1)
    n.up = L.Deconvolution(n.conv, convolution_param=dict(num_output=1, kernel_size=4,
                                                          stride=2))
    ax, a, b = coord_map_from_to(n.data, n.up)
    # conv: x -> (x + 1 - 1) / 2; deconv: y -> 2 y + 1.5: data's x lands at x + 1.5 in up.
    assert ax == 1 and a.tolist() == [1.0] and b.tolist() == [1.5]
    ax, a, b = coord_map_from_to(n.up, n.data)
    assert ax == 1 and a.tolist() == [1.0] and b.tolist() == [-1.5]


def test_disagreeing_paths_are_an_error_not_a_coin_toss():
    """Two branches summed after crops that do not align them: the sum's coordinates
    have no single map back to data (real pycaffe answers with whichever its set
    visits last)."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 64, 64]))
    n.ref = L.Input(shape=dict(dim=[1, 1, 60, 60]))
    n.a = L.Crop(n.data, n.ref, axis=2, offset=0)
    n.b = L.Crop(n.data, n.ref, axis=2, offset=2)
    n.sum = L.Eltwise(n.a, n.b)
    n.conv = L.Convolution(n.sum, num_output=1, kernel_size=3)
    with pytest.raises(CoordMapError, match=r"the Input layer's top 0 is reached from the "
                                            r"Convolution \(num_output=1, kernel_size=3\) "
                                            r"layer's top 0 by two paths whose maps differ "
                                            r"\(scale \[1.\], shift \[-1.\] and scale "
                                            r"\[1.\], shift \[-3.\]\): the branches"):
        crop(n.data, n.conv)


def test_arguments_must_be_tops_and_convolutions_need_a_kernel_size():
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    with pytest.raises(CoordMapError, match=r"Convolution \(num_output=1\) has no "
                                            r"kernel_size"):
        crop(n.data, L.Convolution(n.data, num_output=1))
    with pytest.raises(CoordMapError, match=r"top_to is str, not a net_spec Top"):
        crop(n.data, "data")


def test_pooling_param_message_is_read_as_well():
    """pycaffe reads a Pooling's fields at the top level only (a pooling_param= dict
    raises KeyError 'kernel_size'); here both spellings give the same map."""
    n = NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 64, 64]))
    flat = L.Pooling(n.data, pool=P.Pooling.MAX, kernel_size=3, stride=2, pad=1)
    nested = L.Pooling(n.data, pooling_param=dict(pool=P.Pooling.MAX, kernel_size=3,
                                                  stride=2, pad=1))
    for top in (flat, nested):
        ax, a, b = coord_map_from_to(n.data, top)
        assert (ax, a.tolist(), b.tolist()) == (1, [0.5], [0.0])
    assert np.array_equal(coord_map.conv_params(nested.fn)[1], [2])
