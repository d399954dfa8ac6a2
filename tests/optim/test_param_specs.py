"""Lowering.param_specs (caffe_fx/lowering/builder.py) resolves shared blobs' lr_mult and
decay_mult as Net::AppendParam does: the owner's where set, else the first sharer's that
sets it, and a mismatch where both are set is Caffe's CHECK failure."""
from __future__ import annotations

import pytest

import caffe_fx
from caffe_fx.errors import NetDefinitionError

NET = '''name: "share"
layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ dim: 2 dim: 3 }} }} }}
layer {{ name: "a" type: "InnerProduct" bottom: "data" top: "a"
  param {{ name: "w" {a} }} inner_product_param {{ num_output: 3 bias_term: false }} }}
layer {{ name: "b" type: "InnerProduct" bottom: "data" top: "b"
  param {{ name: "w" {b} }} inner_product_param {{ num_output: 3 bias_term: false }} }}
'''


def specs(a: str, b: str) -> dict:
    gm = caffe_fx.compile(NET.format(a=a, b=b), phase="train")
    return {k: (v.lr_mult, v.decay_mult, v.owner) for k, v in gm.meta["caffe"].param_specs.items()}


def test_owner_takes_sharers_fields_it_left_unset() -> None:
    assert specs("decay_mult: 3", "lr_mult: 5") == {
        "a.weight": (5.0, 3.0, None), "b.weight": (5.0, 1.0, "a.weight")}


def test_mismatch_is_an_error() -> None:
    with pytest.raises(NetDefinitionError,
                       match=r"layer 'b': shared param 'w' has mismatched lr_mult: 2.0 here, "
                             r"1.0 in layer 'a'"):
        specs("lr_mult: 1", "lr_mult: 2")
