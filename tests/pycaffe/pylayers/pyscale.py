"""Python layers with a parameter string, learnable blobs and two tops (caffe_fx tests).

Imported by real pycaffe (tools/make_pylayer_goldens.py) and by caffe_fx.pycaffe alike.
"""
import json

import numpy as np

try:
    import caffe
except ImportError:
    import caffe_fx.pycaffe as caffe


class ScaleLayer(caffe.Layer):
    """top = bottom * s, s = float(param_str)."""

    def setup(self, bottom, top):
        self.scale = float(self.param_str)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data * self.scale

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = top[0].diff * self.scale


class AffineLayer(caffe.Layer):
    """top = bottom * w + b per channel (axis 1); w, b learnable blobs of shape (C,);
    param_str is JSON {"offset": x}, added to the output in TRAIN phase only."""

    def setup(self, bottom, top):
        channels = bottom[0].data.shape[1]
        self.blobs.add_blob(channels)
        self.blobs.add_blob(channels)
        self.blobs[0].data[...] = 1.0
        self.offset = json.loads(self.param_str)["offset"] if self.phase == 0 else 0.0

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def _bcast(self, a, ndim):
        return a.reshape((1, -1) + (1,) * (ndim - 2))

    def forward(self, bottom, top):
        x = bottom[0].data
        w = self._bcast(self.blobs[0].data, x.ndim)
        b = self._bcast(self.blobs[1].data, x.ndim)
        top[0].data[...] = x * w + b + self.offset

    def backward(self, top, propagate_down, bottom):
        x, g = bottom[0].data, top[0].diff
        axes = tuple(a for a in range(x.ndim) if a != 1)
        self.blobs[0].diff[...] += (g * x).sum(axis=axes)
        self.blobs[1].diff[...] += g.sum(axis=axes)
        if propagate_down[0]:
            bottom[0].diff[...] = g * self._bcast(self.blobs[0].data, x.ndim)


class SquareAndMeanLayer(caffe.Layer):
    """Two tops: bottom^2 (same shape) and the mean over axis 1 (shape (N, 1))."""

    def setup(self, bottom, top):
        pass  # real pycaffe recurses without one (Layer.setup is LayerSetUp itself)

    def reshape(self, bottom, top):
        n = bottom[0].data.shape[0]
        top[0].reshape(*bottom[0].data.shape)
        top[1].reshape(n, 1)

    def forward(self, bottom, top):
        x = bottom[0].data
        top[0].data[...] = x * x
        top[1].data[...] = x.reshape(x.shape[0], -1).mean(axis=1, keepdims=True)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        x = bottom[0].data
        per = np.prod(x.shape[1:])
        g_mean = top[1].diff.reshape((x.shape[0],) + (1,) * (x.ndim - 1)) / per
        bottom[0].diff[...] = 2 * x * top[0].diff + g_mean


class RecordLayer(caffe.Layer):
    """No tops: keeps the sum of its bottom at each forward (a side effect only)."""

    def setup(self, bottom, top):
        self.seen = []

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        self.seen.append(float(bottom[0].data.sum()))

    def backward(self, top, propagate_down, bottom):
        pass
