"""A Euclidean loss as a Python layer, in the style of BVLC's examples/pycaffe/layers/pyloss.py.

Imported by real pycaffe (tools/make_pylayer_goldens.py) and by caffe_fx.pycaffe alike;
`caffe` is whichever of the two the caller put on sys.modules.
"""
import numpy as np

try:
    import caffe
except ImportError:
    import caffe_fx.pycaffe as caffe


class EuclideanLossLayer(caffe.Layer):
    """loss = sum((b0 - b1)^2) / num / 2; backward scales by the top's diff (loss weight)."""

    def setup(self, bottom, top):
        if len(bottom) != 2:
            raise ValueError("Need two inputs to compute distance.")

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise ValueError("Inputs must have the same dimension.")
        self.diff = np.zeros_like(bottom[0].data, dtype=np.float32)
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.diff[...] = bottom[0].data - bottom[1].data
        top[0].data[...] = np.sum(self.diff ** 2) / bottom[0].num / 2.0

    def backward(self, top, propagate_down, bottom):
        for i in range(2):
            if not propagate_down[i]:
                continue
            sign = 1 if i == 0 else -1
            bottom[i].diff[...] = sign * top[0].diff[0] * self.diff / bottom[i].num
