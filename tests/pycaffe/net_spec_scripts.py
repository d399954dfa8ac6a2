"""NetSpec scripts run by real pycaffe (tools/make_net_spec_goldens.py) and by ours.

Each script takes a `caffe`-like module (NetSpec, layers, params, to_proto, TRAIN, TEST)
and returns a NetParameter.  The text real pycaffe 1.0 prints for it is
tests/golden/net_spec/<name>.prototxt.  Styles follow BVLC examples/01-learning-lenet,
examples/pycaffe/caffenet.py and shelhamer/fcn.berkeleyvision.org's net.py files.
Plain Python 3.9 (the reference chroot's), no imports beyond the standard library.
"""
# ruff: noqa: C408  (dict(...) keywords are how pycaffe users write layer fields)
from __future__ import annotations

from collections.abc import Callable
from typing import Any

# name -> script; scripts whose name starts with "error_" must raise.
SCRIPTS: dict[str, Callable[[Any], Any]] = {}


def script(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    SCRIPTS[fn.__name__] = fn
    return fn


@script
def lenet(caffe: Any) -> Any:
    """examples/01-learning-lenet.ipynb, verbatim but for the arguments."""
    L, P = caffe.layers, caffe.params
    n = caffe.NetSpec()
    n.data, n.label = L.Data(batch_size=64, backend=P.Data.LMDB,
                             source="mnist/mnist_train_lmdb",
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50,
                            weight_filler=dict(type="xavier"))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type="xavier"))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type="xavier"))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


def _conv_relu(caffe: Any, bottom: Any, ks: int, nout: int, stride: int = 1, pad: int = 0,
               group: int = 1) -> Any:
    L = caffe.layers
    conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad,
                         group=group,
                         param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)],
                         weight_filler=dict(type="gaussian", std=0.01),
                         bias_filler=dict(type="constant", value=0.1))
    return conv, L.ReLU(conv, in_place=True)


def _fc_relu(caffe: Any, bottom: Any, nout: int) -> Any:
    L = caffe.layers
    fc = L.InnerProduct(bottom, num_output=nout,
                        weight_filler=dict(type="gaussian", std=0.005),
                        bias_filler=dict(type="constant", value=1))
    return fc, L.ReLU(fc, in_place=True)


@script
def caffenet(caffe: Any) -> Any:
    """examples/pycaffe/caffenet.py: helpers, LRN, Dropout in place, Accuracy in TEST."""
    L, P = caffe.layers, caffe.params
    n = caffe.NetSpec()
    n.data, n.label = L.Data(source="ilsvrc12_train_lmdb", backend=P.Data.LMDB,
                             batch_size=256, ntop=2,
                             transform_param=dict(crop_size=227, mean_value=[104, 117, 123],
                                                  mirror=True))
    n.conv1, n.relu1 = _conv_relu(caffe, n.data, 11, 96, stride=4)
    n.pool1 = L.Pooling(n.relu1, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.norm1 = L.LRN(n.pool1, local_size=5, alpha=1e-4, beta=0.75)
    n.conv2, n.relu2 = _conv_relu(caffe, n.norm1, 5, 256, pad=2, group=2)
    n.pool2 = L.Pooling(n.relu2, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.norm2 = L.LRN(n.pool2, local_size=5, alpha=1e-4, beta=0.75)
    n.conv3, n.relu3 = _conv_relu(caffe, n.norm2, 3, 384, pad=1)
    n.pool5 = L.Pooling(n.relu3, pool=P.Pooling.MAX, kernel_size=3, stride=2)
    n.fc6, n.relu6 = _fc_relu(caffe, n.pool5, 4096)
    n.drop6 = L.Dropout(n.relu6, in_place=True, dropout_ratio=0.5)
    n.fc8 = L.InnerProduct(n.drop6, num_output=1000)
    n.loss = L.SoftmaxWithLoss(n.fc8, n.label)
    n.acc = L.Accuracy(n.fc8, n.label, include=dict(phase=caffe.TEST), top_k=5)
    return n.to_proto()


@script
def fcn32s(caffe: Any) -> Any:
    """fcn.berkeleyvision.org voc-fcn32s/net.py style: Python data layer, pad=100,
    Deconvolution with a frozen bilinear upsampler, Crop, ignore_label."""
    L, P = caffe.layers, caffe.params
    n = caffe.NetSpec()
    pydata_params = dict(split="train", mean=(104.00699, 116.66877, 122.67892),
                         seed=1337, voc_dir="../data/pascal/VOC2011")
    n.data, n.label = L.Python(module="voc_layers", layer="SBDDSegDataLayer", ntop=2,
                               param_str=str(pydata_params))
    n.conv1_1, n.relu1_1 = _conv_relu(caffe, n.data, 3, 64, pad=100)
    n.pool1 = L.Pooling(n.relu1_1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.fc6, n.relu6 = _conv_relu(caffe, n.pool1, 7, 4096)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.score_fr = L.Convolution(n.drop6, num_output=21, kernel_size=1, pad=0,
                               param=[dict(lr_mult=1, decay_mult=1),
                                      dict(lr_mult=2, decay_mult=0)])
    n.upscore = L.Deconvolution(n.score_fr,
                                convolution_param=dict(num_output=21, kernel_size=64,
                                                       stride=32, bias_term=False),
                                param=[dict(lr_mult=0)])
    n.score = L.Crop(n.upscore, n.data, axis=2, offset=19)
    n.loss = L.SoftmaxWithLoss(n.score, n.label,
                               loss_param=dict(normalize=False, ignore_label=255))
    return n.to_proto()


@script
def misc(caffe: Any) -> Any:
    """ntop=2 Slice, loss_weight, include/exclude, a Python loss, DummyData with
    repeated shapes, Eltwise, BatchNorm/Scale, Silence with ntop=0, an explicit name."""
    L, P = caffe.layers, caffe.params
    n = caffe.NetSpec()
    n.data, n.target = L.DummyData(shape=[dict(dim=[10, 4, 2, 2]), dict(dim=[10, 2, 2, 2])],
                                   data_filler=[dict(type="gaussian", std=0.3),
                                                dict(type="constant", value=-1.5)],
                                   ntop=2)
    n.a, n.b = L.Slice(n.data, slice_param=dict(axis=1, slice_point=2), ntop=2)
    n.sum = L.Eltwise(n.a, n.b, operation=P.Eltwise.SUM, coeff=[0.5, -2])
    n.bn = L.BatchNorm(n.sum, use_global_stats=False, param=[dict(lr_mult=0)] * 3,
                       include={"phase": caffe.TRAIN})
    n.scaled = L.Scale(n.bn, bias_term=True, name="scale_bn")
    n.l2 = L.EuclideanLoss(n.scaled, n.target, loss_weight=0.3)
    n.pyloss = L.Python(n.scaled, n.target, python_param=dict(
        module="pyloss", layer="EuclideanLossLayer",
        param_str="{'w': \"é\\n\"}"), loss_weight=1,
        exclude=[dict(phase=caffe.TEST), dict(stage="deploy", not_stage=["x", "y"])])
    n.silence = L.Silence(n.a, ntop=0)
    n.hinge = L.HingeLoss(n.sum, n.target, norm=P.HingeLoss.L2,
                          propagate_down=[True, False], loss_weight=[2])
    return n.to_proto()


@script
def input_deploy(caffe: Any) -> Any:
    """A deploy net: Input with input_param shape (by the type's own message and
    explicitly), ReLU in place, Softmax; compiled by caffe_fx as a sanity check."""
    L, P = caffe.layers, caffe.params
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 1, 12, 12]))
    n.extra = L.Input(input_param=dict(shape=[dict(dim=[2, 3])]))
    n.conv1 = L.Convolution(n.data, num_output=4, kernel_size=3, stride=1,
                            weight_filler=dict(type="gaussian", std=0.1),
                            bias_filler=dict(type="constant", value=0.2))
    n.relu1 = L.ReLU(n.conv1, in_place=True, negative_slope=0.1)
    n.pool1 = L.Pooling(n.relu1, kernel_size=2, stride=2, pool=P.Pooling.AVE)
    n.ip1 = L.InnerProduct(n.pool1, num_output=3, weight_filler=dict(type="xavier"))
    n.sum = L.Eltwise(n.ip1, n.extra, operation=P.Eltwise.SUM)
    n.prob = L.Softmax(n.sum)
    return n.to_proto()


@script
def autonames(caffe: Any) -> Any:
    """Unassigned tops get <Type><k> names from one counter per type; an unassigned
    in-place layer's name is drawn although its top keeps the bottom's name."""
    L = caffe.layers
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 8, 8]))
    conv = L.Convolution(n.data, num_output=2, kernel_size=3)
    relu = L.ReLU(conv, in_place=True)
    pool = L.Pooling(relu, kernel_size=2)
    n.out = L.Convolution(L.Convolution(pool, num_output=2, kernel_size=1), num_output=1,
                          kernel_size=1)
    n.same = n.out  # one top under two names: the last one wins
    return n.to_proto()


@script
def module_to_proto(caffe: Any) -> Any:
    """caffe.to_proto(*tops) and Top.to_proto(): automatic names only."""
    L = caffe.layers
    data, label = L.DummyData(shape=[dict(dim=[4, 3]), dict(dim=[4])], ntop=2)
    ip = L.InnerProduct(data, num_output=5)
    loss = L.SoftmaxWithLoss(ip, label)
    acc = L.Accuracy(ip, label)
    first = caffe.to_proto(loss, acc)
    second = acc.to_proto()
    first.layer.extend(second.layer)
    return first


def _fcn_conv_relu(caffe: Any, bottom: Any, nout: int, ks: int = 3, stride: int = 1,
                   pad: int = 1) -> Any:
    L = caffe.layers
    conv = L.Convolution(bottom, kernel_size=ks, stride=stride, num_output=nout, pad=pad,
                         param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    return conv, L.ReLU(conv, in_place=True)


def _fcn_max_pool(caffe: Any, bottom: Any, ks: int = 2, stride: int = 2) -> Any:
    return caffe.layers.Pooling(bottom, pool=caffe.params.Pooling.MAX, kernel_size=ks,
                                stride=stride)


def _fcn_upscore(caffe: Any, bottom: Any, ks: int, stride: int) -> Any:
    return caffe.layers.Deconvolution(
        bottom, convolution_param=dict(num_output=21, kernel_size=ks, stride=stride,
                                       bias_term=False), param=[dict(lr_mult=0)])


def _fcn_score(caffe: Any, bottom: Any) -> Any:
    return caffe.layers.Convolution(bottom, num_output=21, kernel_size=1, pad=0,
                                    param=[dict(lr_mult=1, decay_mult=1),
                                           dict(lr_mult=2, decay_mult=0)])


@script
def fcn8s_crop(caffe: Any) -> Any:
    """fcn.berkeleyvision.org voc-fcn8s/net.py style: the VGG16 body (conv1_1 pad=100),
    skips from pool4 and pool3, and every Crop made by caffe.coord_map.crop()."""
    L, P = caffe.layers, caffe.params
    crop = caffe.coord_map.crop
    n = caffe.NetSpec()
    n.data, n.label = L.Python(module="voc_layers", layer="SBDDSegDataLayer", ntop=2,
                               param_str=str(dict(split="train", seed=1337)))
    n.conv1_1, n.relu1_1 = _fcn_conv_relu(caffe, n.data, 64, pad=100)
    n.conv1_2, n.relu1_2 = _fcn_conv_relu(caffe, n.relu1_1, 64)
    n.pool1 = _fcn_max_pool(caffe, n.relu1_2)
    n.conv2_1, n.relu2_1 = _fcn_conv_relu(caffe, n.pool1, 128)
    n.conv2_2, n.relu2_2 = _fcn_conv_relu(caffe, n.relu2_1, 128)
    n.pool2 = _fcn_max_pool(caffe, n.relu2_2)
    n.conv3_1, n.relu3_1 = _fcn_conv_relu(caffe, n.pool2, 256)
    n.conv3_2, n.relu3_2 = _fcn_conv_relu(caffe, n.relu3_1, 256)
    n.conv3_3, n.relu3_3 = _fcn_conv_relu(caffe, n.relu3_2, 256)
    n.pool3 = _fcn_max_pool(caffe, n.relu3_3)
    n.conv4_1, n.relu4_1 = _fcn_conv_relu(caffe, n.pool3, 512)
    n.conv4_2, n.relu4_2 = _fcn_conv_relu(caffe, n.relu4_1, 512)
    n.conv4_3, n.relu4_3 = _fcn_conv_relu(caffe, n.relu4_2, 512)
    n.pool4 = _fcn_max_pool(caffe, n.relu4_3)
    n.conv5_1, n.relu5_1 = _fcn_conv_relu(caffe, n.pool4, 512)
    n.conv5_2, n.relu5_2 = _fcn_conv_relu(caffe, n.relu5_1, 512)
    n.conv5_3, n.relu5_3 = _fcn_conv_relu(caffe, n.relu5_2, 512)
    n.pool5 = _fcn_max_pool(caffe, n.relu5_3)
    n.fc6, n.relu6 = _fcn_conv_relu(caffe, n.pool5, 4096, ks=7, pad=0)
    n.drop6 = L.Dropout(n.relu6, dropout_ratio=0.5, in_place=True)
    n.fc7, n.relu7 = _fcn_conv_relu(caffe, n.drop6, 4096, ks=1, pad=0)
    n.drop7 = L.Dropout(n.relu7, dropout_ratio=0.5, in_place=True)
    n.score_fr = _fcn_score(caffe, n.drop7)
    n.upscore2 = _fcn_upscore(caffe, n.score_fr, 4, 2)
    n.score_pool4 = _fcn_score(caffe, n.pool4)
    n.score_pool4c = crop(n.score_pool4, n.upscore2)
    n.fuse_pool4 = L.Eltwise(n.upscore2, n.score_pool4c, operation=P.Eltwise.SUM)
    n.upscore_pool4 = _fcn_upscore(caffe, n.fuse_pool4, 4, 2)
    n.score_pool3 = _fcn_score(caffe, n.pool3)
    n.score_pool3c = crop(n.score_pool3, n.upscore_pool4)
    n.fuse_pool3 = L.Eltwise(n.upscore_pool4, n.score_pool3c, operation=P.Eltwise.SUM)
    n.upscore8 = _fcn_upscore(caffe, n.fuse_pool3, 16, 8)
    n.score = crop(n.upscore8, n.data)
    n.loss = L.SoftmaxWithLoss(n.score, n.label,
                               loss_param=dict(normalize=False, ignore_label=255))
    return n.to_proto()


def _coord_base(caffe: Any) -> Any:
    """BVLC's test_coord_map pattern: conv -> pool -> deconv beside an auxiliary input."""
    L, P = caffe.layers, caffe.params
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[2, 1, 100, 100]))
    n.aux = L.Input(shape=dict(dim=[2, 1, 20, 20]))
    n.conv = L.Convolution(n.data, num_output=10, kernel_size=5, stride=1, pad=1)
    n.relu = L.ReLU(n.conv, in_place=True)
    n.pool = L.Pooling(n.relu, pool=P.Pooling.MAX, kernel_size=2, stride=2, pad=0)
    n.deconv = L.Deconvolution(n.pool, convolution_param=dict(num_output=10, kernel_size=2,
                                                             stride=2, pad=0))
    return n


@script
def coord_map_crops(caffe: Any) -> Any:
    """crop() through every kind of mapped layer: convolution with pad, dilation and
    per-axis kernels, pooling with pad, deconvolution with pad, Im2col, a Crop already in
    the path (its second bottom not walked), Eltwise and Split branches."""
    L, P = caffe.layers, caffe.params
    crop = caffe.coord_map.crop
    n = _coord_base(caffe)
    n.c_deconv = crop(n.data, n.deconv)
    n.dil = L.Convolution(n.data, num_output=4, kernel_size=3, dilation=2)
    n.c_dil = crop(n.data, n.dil)
    n.rect = L.Convolution(n.data, num_output=4, kernel_size=[3, 5], pad=[0, 0])
    n.c_rect = crop(n.data, n.rect)
    n.padpool = L.Pooling(n.data, pool=P.Pooling.AVE, kernel_size=3, stride=2, pad=1)
    n.up = L.Deconvolution(n.padpool, convolution_param=dict(num_output=1, kernel_size=5,
                                                             stride=2, pad=3))
    n.c_up = crop(n.data, n.up)
    n.cols = L.Im2col(n.data, convolution_param=dict(kernel_size=7, stride=1))
    n.c_cols = crop(n.data, n.cols)
    n.shifted = L.Crop(n.conv, n.aux, axis=2, offset=[3, 4])
    n.after = L.Convolution(n.shifted, num_output=2, kernel_size=3)
    n.c_after = crop(n.data, n.after)
    n.split1, n.split2 = L.Split(n.pool, ntop=2)
    n.sum = L.Eltwise(n.split1, n.split2)
    n.sig = L.Sigmoid(n.sum)
    n.up2 = L.Deconvolution(n.sig, convolution_param=dict(num_output=1, kernel_size=4,
                                                          stride=2, pad=2))
    n.c_up2 = crop(n.conv, n.up2)
    n.c_nested = crop(n.data, n.c_up2)
    return n.to_proto()


def _coord_error(caffe: Any, make: Callable[[Any, Any], Any]) -> Any:
    n = _coord_base(caffe)
    n.out = make(caffe, n)
    return n.to_proto()


@script
def error_crop_scale_mismatch(caffe: Any) -> Any:
    return _coord_error(caffe, lambda c, n: c.coord_map.crop(n.data, n.pool))


@script
def error_crop_negative_offset(caffe: Any) -> Any:
    def make(c: Any, n: Any) -> Any:
        n.padded = c.layers.Convolution(n.data, num_output=1, kernel_size=3, pad=2)
        return c.coord_map.crop(n.data, n.padded)
    return _coord_error(caffe, make)


@script
def error_crop_noninteger_offset(caffe: Any) -> Any:
    def make(c: Any, n: Any) -> Any:
        n.even = c.layers.Convolution(n.data, num_output=1, kernel_size=2)
        return c.coord_map.crop(n.data, n.even)
    return _coord_error(caffe, make)


@script
def error_crop_unconnected(caffe: Any) -> Any:
    return _coord_error(caffe, lambda c, n: c.coord_map.crop(n.aux, n.conv))


@script
def error_crop_axis_mismatch(caffe: Any) -> Any:
    def make(c: Any, n: Any) -> Any:
        n.conv3 = c.layers.Convolution(n.conv, num_output=1, kernel_size=3, axis=2)
        return c.coord_map.crop(n.data, n.conv3)
    return _coord_error(caffe, make)


@script
def error_crop_pass_through_only(caffe: Any) -> Any:
    def make(c: Any, n: Any) -> Any:
        n.tanh = c.layers.TanH(n.data)
        return c.coord_map.crop(n.data, n.tanh)
    return _coord_error(caffe, make)


@script
def error_crop_legacy_fields(caffe: Any) -> Any:
    def make(c: Any, n: Any) -> Any:
        n.legacy = c.layers.Convolution(n.data, num_output=1, kernel_size=3, pad_h=1, pad_w=1)
        return c.coord_map.crop(n.data, n.legacy)
    return _coord_error(caffe, make)


@script
def error_crop_no_kernel_size(caffe: Any) -> Any:
    def make(c: Any, n: Any) -> Any:
        n.hw = c.layers.Convolution(n.data, num_output=1, kernel_h=3, kernel_w=3)
        return c.coord_map.crop(n.data, n.hw)
    return _coord_error(caffe, make)


@script
def error_crop_global_pooling(caffe: Any) -> Any:
    def make(c: Any, n: Any) -> Any:
        n.gp = c.layers.Pooling(n.conv, pool=c.params.Pooling.AVE, global_pooling=True)
        return c.coord_map.crop(n.data, n.gp)
    return _coord_error(caffe, make)


@script
def error_bottom_not_top(caffe: Any) -> Any:
    return caffe.layers.ReLU("data")


@script
def error_unknown_field(caffe: Any) -> Any:
    n = caffe.NetSpec()
    n.data = caffe.layers.Input(shape=dict(dim=[1]))
    n.conv = caffe.layers.Convolution(n.data, num_outputs=3)
    return n.to_proto()


@script
def error_wrong_value_type(caffe: Any) -> Any:
    n = caffe.NetSpec()
    n.data = caffe.layers.Input(shape=dict(dim=[1]))
    n.conv = caffe.layers.Convolution(n.data, num_output="3")
    return n.to_proto()
