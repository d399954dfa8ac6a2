"""net_surgery, as a script: designer filters, then CaffeNet's fully connected layers
cast into convolutions (the classifier becomes fully convolutional).

    python net_surgery.py OUT.npz CONV.prototxt DEPLOY.prototxt FULL_CONV.prototxt \
        WEIGHTS.caffemodel SCRATCH_DIR

Plain pycaffe (`import caffe`), Python 3.9 compatible: run under BVLC pycaffe by
tools/make_notebook_goldens.py and under caffe_fx by tests/pycaffe/test_notebooks.py.
"""
import json
import os
import sys

import caffe
import numpy as np

out_path, conv_def, model_def, full_conv_def, model_weights, scratch = sys.argv[1:7]
caffe.set_mode_cpu()
results = {}

# -- Designer filters --------------------------------------------------------------
net = caffe.Net(conv_def, caffe.TEST)
# Instead of cat_gray.jpg: a deterministic gray image in [0, 1].
y, x = np.mgrid[0:60, 0:80].astype(np.float32)
im = (0.5 + 0.5 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.float32)
im_input = im[np.newaxis, np.newaxis, :, :]
net.blobs['data'].reshape(*im_input.shape)
net.blobs['data'].data[...] = im_input

ksize = net.params['conv'][0].data.shape[2:]
# make Gaussian blur
sigma = 1.
y, x = np.mgrid[-ksize[0] // 2 + 1:ksize[0] // 2 + 1, -ksize[1] // 2 + 1:ksize[1] // 2 + 1]
g = np.exp(-((x ** 2 + y ** 2) / (2.0 * sigma ** 2)))
gaussian = (g / g.sum()).astype(np.float32)
net.params['conv'][0].data[0] = gaussian
# make Sobel operator for edge detection
net.params['conv'][0].data[1:] = 0.
sobel = np.array((-1, -2, -1, 0, 0, 0, 1, 2, 1), dtype=np.float32).reshape((3, 3))
net.params['conv'][0].data[1, 0, 1:-1, 1:-1] = sobel    # horizontal
net.params['conv'][0].data[2, 0, 1:-1, 1:-1] = sobel.T  # vertical
net.params['conv'][1].data[...] = 0.
net.forward()
results['designer_conv'] = net.blobs['conv'].data[0].copy()
results['designer_shape'] = np.array(net.blobs['conv'].data.shape)

# -- Casting a classifier into a fully convolutional network -----------------------
net = caffe.Net(model_def, model_weights, caffe.TEST)
params = ['fc6', 'fc7', 'fc8']
# fc_params = {name: (weights, biases)}
fc_params = {pr: (net.params[pr][0].data, net.params[pr][1].data) for pr in params}

net_full_conv = caffe.Net(full_conv_def, model_weights, caffe.TEST)
params_full_conv = ['fc6-conv', 'fc7-conv', 'fc8-conv']
# conv_params = {name: (weights, biases)}
conv_params = {pr: (net_full_conv.params[pr][0].data, net_full_conv.params[pr][1].data)
               for pr in params_full_conv}

shapes = [(pr, list(fc_params[pr][0].shape), list(fc_params[pr][1].shape)) for pr in params]
shapes += [(pr, list(conv_params[pr][0].shape), list(conv_params[pr][1].shape))
           for pr in params_full_conv]
results['param_shapes'] = np.array(json.dumps(shapes))

for pr, pr_conv in zip(params, params_full_conv):
    conv_params[pr_conv][0].flat = fc_params[pr][0].flat  # flat unrolls the arrays
    conv_params[pr_conv][1][...] = fc_params[pr][1]

saved = os.path.join(scratch, 'bvlc_caffenet_full_conv.caffemodel')
net_full_conv.save(saved)

# Instead of cat.jpg: a deterministic RGB image in [0, 1].
y, x = np.mgrid[0:300, 0:360].astype(np.float64)
im = np.stack([0.5 + 0.5 * np.cos(x / 13.0) * np.sin(y / 19.0),
               np.abs(np.sin((x - y) / 31.0)),
               (x * y) / (300.0 * 360.0)], axis=2).astype(np.float32)

transformer = caffe.io.Transformer({'data': net_full_conv.blobs['data'].data.shape})
transformer.set_mean('data', np.array([104.00698793, 116.66876762, 122.67891434]))
transformer.set_transpose('data', (2, 0, 1))
transformer.set_channel_swap('data', (2, 1, 0))
transformer.set_raw_scale('data', 255.0)
image = transformer.preprocess('data', im)
# make classification map by forward and print prediction indices at each location
out = net_full_conv.forward_all(data=np.asarray([image]))
results['prob_map_argmax'] = out['prob'][0].argmax(axis=0)
results['prob_map_shape'] = np.array(out['prob'].shape)
results['fc8_conv_corners'] = net_full_conv.blobs['fc8-conv'].data[0][:, [0, -1], [0, -1]]

# The fully connected net on the two corner crops gives the corner outputs.
for name, (top, left) in (('top_left', (0, 0)), ('bottom_right', (224, 224))):
    crop = image[np.newaxis, :, top:top + 227, left:left + 227]
    net.blobs['data'].reshape(*crop.shape)
    results['fc8_' + name] = net.forward(data=crop, blobs=['fc8'])['fc8'][0].copy()

# The saved weights load back into a fresh fully convolutional net.
reloaded = caffe.Net(full_conv_def, saved, caffe.TEST)
results['reloaded_fc8_conv_bias'] = reloaded.params['fc8-conv'][1].data.copy()
results['reloaded_fc6_conv_weight_sum'] = np.array(
    reloaded.params['fc6-conv'][0].data.astype(np.float64).sum(axis=(1, 2, 3)))

np.savez_compressed(out_path, **results)
