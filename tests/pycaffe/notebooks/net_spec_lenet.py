# ruff: noqa: C408, I001  (written as the notebook writes it)
"""01-learning-lenet's net definition, as a script: LeNet written with caffe.NetSpec.

    python net_spec_lenet.py OUT.npz SCRATCH_DIR

The training net (L.Data on LMDB) is only printed; a deploy twin fed by L.Input is
loaded with caffe.Net, given seeded weights, and run forward.  Plain pycaffe (`import
caffe`), Python 3.9 compatible: run under BVLC pycaffe by tools/make_notebook_goldens.py
and under caffe_fx by tests/pycaffe/test_notebooks.py.
"""
import json
import os
import sys

import numpy as np

import caffe
from caffe import layers as L, params as P

out_path, scratch = sys.argv[1:3]


def lenet(lmdb, batch_size):
    # our version of LeNet: a series of linear and simple nonlinear transformations
    n = caffe.NetSpec()
    n.data, n.label = L.Data(batch_size=batch_size, backend=P.Data.LMDB, source=lmdb,
                             transform_param=dict(scale=1. / 255), ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    return n.to_proto()


def lenet_input(batch_size):
    # the same net fed by Input layers, since no LMDB is at hand
    n = caffe.NetSpec()
    n.data, n.label = L.Input(shape=[dict(dim=[batch_size, 1, 28, 28]), dict(dim=[batch_size])],
                              ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    n.pool1 = L.Pooling(n.conv1, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.conv2 = L.Convolution(n.pool1, kernel_size=5, num_output=50, weight_filler=dict(type='xavier'))
    n.pool2 = L.Pooling(n.conv2, kernel_size=2, stride=2, pool=P.Pooling.MAX)
    n.fc1 = L.InnerProduct(n.pool2, num_output=500, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.fc1, in_place=True)
    n.score = L.InnerProduct(n.relu1, num_output=10, weight_filler=dict(type='xavier'))
    n.loss = L.SoftmaxWithLoss(n.score, n.label)
    n.prob = L.Softmax(n.score)
    return n.to_proto()


train_text = str(lenet('mnist/mnist_train_lmdb', 64))
test_text = str(lenet('mnist/mnist_test_lmdb', 100))
input_text = str(lenet_input(8))
path = os.path.join(scratch, 'lenet_auto_input.prototxt')
with open(path, 'w') as f:
    f.write(input_text)

net = caffe.Net(path, caffe.TEST)
r = np.random.RandomState(3)
for blobs in net.params.values():
    fan_in = blobs[0].data[0].size
    blobs[0].data[...] = r.randn(*blobs[0].data.shape) * np.sqrt(2.0 / fan_in)
    blobs[1].data[...] = r.randn(*blobs[1].data.shape) * 0.1
data = r.rand(8, 1, 28, 28).astype(np.float32)
label = (np.arange(8) % 10).astype(np.float32)
out = net.forward(data=data, label=label)

np.savez_compressed(
    out_path,
    train_text=np.array(train_text),
    test_text=np.array(test_text),
    input_text=np.array(input_text),
    loss=np.array(out['loss']),
    prob=out['prob'],
    score=net.blobs['score'].data,
    prediction=out['prob'].argmax(axis=1),
    outputs=np.array(json.dumps(sorted(out))),
    layer_types=np.array(json.dumps([layer.type for layer in net.layers])),
    blob_shapes=np.array(json.dumps([(name, list(b.data.shape)) for name, b in net.blobs.items()])),
)
