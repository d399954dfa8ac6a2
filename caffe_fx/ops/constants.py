"""The C and Caffe constants the ops and lowerings compare against, as Python floats:
<cfloat>'s FLT_MAX and FLT_MIN (float32's largest and smallest normal values, which
Caffe's float and double code alike use) and SegNet BNLayer's var_eps_.

TorchScript-compiled ops read them as attributes of this module (`constants.FLT_MIN`;
TorchScript refuses a bare name imported from it), or write the literal inline with a
comment naming the constant here.
"""
from __future__ import annotations

FLT_MAX = 3.4028234663852886e38
FLT_MIN = 1.1754943508222875e-38
BN_EPS = 1e-9  # alexgkendall/caffe-segnet BNLayer::LayerSetUp's var_eps_, a Dtype constant
