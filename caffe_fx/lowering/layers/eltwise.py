"""Eltwise (eltwise_param): SUM with coefficients, PROD, MAX over 2+ same-shape bottoms.

Mirrors src/caffe/layers/eltwise_layer.cpp.  Two bottoms without coefficients lower to
ops.eltwise_add / eltwise_mul (torch.add / torch.mul after Reshape's shape CHECK, so a
forward on unequal shapes names the layer); otherwise ops.eltwise folds the list in
Caffe's order, and MAX
always goes there, whose backward routes each diff through Caffe's mask (CPU: ties go to
the earlier bottom, except between bottoms 0 and 1).  PROD's gradient is always the
stable product of the other bottoms (Caffe's stable_prod_grad: true; false gives
dy*y/x_i, which differs only where some x_i = 0).
"""
from __future__ import annotations

from ...errors import ShapeError
from ...ops import eltwise as CE
from ...proto import caffe_pb2
from ..registry import Call, LayerView, register

_E = caffe_pb2.EltwiseParameter


@register("Eltwise", params=("eltwise_param",), bottoms=(2, None), tops=1)
def eltwise(view: LayerView) -> Call:
    p = view.param.eltwise_param
    shapes = view.input_shapes
    if any(s != shapes[0] for s in shapes[1:]):
        raise view.error(f"all bottoms must have the same shape (no broadcasting); got "
                         f"{[list(s) for s in shapes]}", ShapeError)
    coeff = list(p.coeff)
    if coeff and p.operation != _E.SUM:
        raise view.fail("eltwise_param.coeff", coeff,
                        f"no coefficients with operation {_E.EltwiseOp.Name(p.operation)} "
                        "(coefficients are for SUM only)")
    if coeff and len(coeff) != len(view.bottoms):
        raise view.fail("eltwise_param.coeff", coeff,
                        f"none, or one per bottom ({len(view.bottoms)})")
    two = len(view.bottoms) == 2
    name = dict(layer=view.name)  # a forward on unequal shapes names the layer
    if p.operation == _E.SUM:
        if all(c == 1 for c in coeff):
            if two:
                return Call(CE.eltwise_add, name)
            coeff = [1.0] * len(view.bottoms)
        return Call(CE.eltwise_sum, dict(coeff=coeff, **name), packed=True)
    if p.operation == _E.PROD:
        return Call(CE.eltwise_mul, name) if two else Call(CE.eltwise_prod, name, packed=True)
    if p.operation == _E.MAX:
        return Call(CE.eltwise_max, name, packed=True)
    raise view.fail("eltwise_param.operation", _E.EltwiseOp.Name(p.operation), "SUM, PROD, MAX")
