"""00-classification, as a script: CaffeNet classifies one image (synthetic here).

    python classification.py OUT.npz DEPLOY.prototxt WEIGHTS.caffemodel

Plain pycaffe (`import caffe`), Python 3.9 compatible: run under BVLC pycaffe by
tools/make_notebook_goldens.py and under caffe_fx by tests/pycaffe/test_notebooks.py.
"""
import json
import sys

import caffe
import numpy as np

out_path, model_def, model_weights = sys.argv[1:4]

caffe.set_mode_cpu()
net = caffe.Net(model_def,      # defines the structure of the model
                model_weights,  # contains the trained weights
                caffe.TEST)     # use test mode (e.g., don't perform dropout)

# The ILSVRC 2012 mean, averaged over pixels (BGR), as the notebook computes it.
mu = np.array([104.00698793, 116.66876762, 122.67891434])

transformer = caffe.io.Transformer({'data': net.blobs['data'].data.shape})
transformer.set_transpose('data', (2, 0, 1))     # move image channels to outermost dimension
transformer.set_mean('data', mu)                 # subtract the dataset-mean value in each channel
transformer.set_raw_scale('data', 255)           # rescale from [0, 1] to [0, 255]
transformer.set_channel_swap('data', (2, 1, 0))  # swap channels from RGB to BGR

net.blobs['data'].reshape(1, 3, 227, 227)        # batch size 1

# Instead of caffe.io.load_image('cat.jpg'): a deterministic RGB image in [0, 1].
y, x = np.mgrid[0:256, 0:320].astype(np.float64)
image = np.stack([0.5 + 0.5 * np.sin(x / 17.0) * np.cos(y / 23.0),
                  (x + y) / (256.0 + 320.0),
                  0.5 + 0.5 * np.cos(np.hypot(x - 160.0, y - 128.0) / 9.0)], axis=2)
image = image.astype(np.float32)

transformed_image = transformer.preprocess('data', image)
net.blobs['data'].data[...] = transformed_image

output = net.forward()
output_prob = output['prob'][0]  # the output probability vector for the first image in the batch
top_inds = output_prob.argsort()[::-1][:5]  # reverse sort and take five largest items

blob_shapes = [(name, list(blob.data.shape)) for name, blob in net.blobs.items()]
param_shapes = [(name, list(param[0].data.shape), list(param[1].data.shape))
                for name, param in net.params.items()]

np.savez_compressed(
    out_path,
    transformed=transformed_image[:, ::4, ::4],
    deprocessed=transformer.deprocess('data', transformed_image)[::4, ::4],
    prob=output_prob,
    argmax=np.array(output_prob.argmax()),
    top5=top_inds,
    top5_prob=output_prob[top_inds],
    conv1_feat=net.blobs['conv1'].data[0, :4, ::2, ::2],
    pool5=net.blobs['pool5'].data[0],
    fc7=net.blobs['fc7'].data[0],
    fc8=net.blobs['fc8'].data[0],
    blob_shapes=np.array(json.dumps(blob_shapes)),
    param_shapes=np.array(json.dumps(param_shapes)),
    outputs=np.array(json.dumps(sorted(output))),
)
