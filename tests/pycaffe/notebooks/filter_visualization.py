"""The filter and feature visualisation of 00-classification, as a script, on LeNet:
parameters and activations tiled into grids by the notebook's vis_square.

    python filter_visualization.py OUT.npz LENET.prototxt LENET.caffemodel

Plain pycaffe (`import caffe`), Python 3.9 compatible: run under BVLC pycaffe by
tools/make_notebook_goldens.py and under caffe_fx by tests/pycaffe/test_notebooks.py.
"""
import json
import sys

import caffe
import numpy as np

out_path, model_def, model_weights = sys.argv[1:4]


def vis_square(data):
    """Take an array of shape (n, height, width) or (n, height, width, 3)
       and visualize each (height, width) thing in a grid of size approx. sqrt(n) by sqrt(n)"""
    # normalize data for display
    data = (data - data.min()) / (data.max() - data.min())
    # force the number of filters to be square
    n = int(np.ceil(np.sqrt(data.shape[0])))
    padding = (((0, n ** 2 - data.shape[0]),
               (0, 1), (0, 1))                 # add some space between filters
               + ((0, 0),) * (data.ndim - 3))  # don't pad the last dimension (if there is one)
    data = np.pad(data, padding, mode='constant', constant_values=1)  # pad with ones (white)
    # tile the filters into an image
    data = data.reshape((n, n) + data.shape[1:]).transpose(
        (0, 2, 1, 3) + tuple(range(4, data.ndim + 1)))
    data = data.reshape((n * data.shape[1], n * data.shape[3]) + data.shape[4:])
    return data


caffe.set_mode_cpu()
net = caffe.Net(model_def, model_weights, caffe.TEST)
net.blobs['data'].reshape(1, 1, 28, 28)

# Instead of an MNIST digit: a deterministic "7" drawn into a 28x28 image in [0, 1].
digit = np.zeros((28, 28), np.float32)
digit[5:8, 6:22] = 1.0
for row in range(8, 24):
    col = 21 - (row - 8) // 2
    digit[row, col - 1:col + 2] = 1.0
digit[13:15, 10:20] = 0.6
net.blobs['data'].data[...] = digit
out = net.forward()

results = {}
# the parameters are a list of [weights, biases]
filters = net.params['conv1'][0].data
results['conv1_filters'] = vis_square(filters[:, 0])
results['conv2_filters'] = vis_square(net.params['conv2'][0].data[:, 0])
feat = net.blobs['conv1'].data[0, :36]
results['conv1_features'] = vis_square(feat)
feat = net.blobs['pool2'].data[0]
results['pool2_features'] = vis_square(feat)
feat = net.blobs['ip1'].data[0]
results['ip1'] = feat.copy()
positive = feat.flat[:]
results['ip1_positive'] = np.array(int((positive > 0).sum()))
feat = net.blobs['prob'].data[0]
results['prob'] = feat.copy()
results['label'] = np.array(feat.argmax())
results['outputs'] = np.array(json.dumps(sorted(out)))
results['blob_shapes'] = np.array(json.dumps(
    [(name, list(blob.data.shape)) for name, blob in net.blobs.items()]))

np.savez_compressed(out_path, **results)
