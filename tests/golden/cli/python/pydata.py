import caffe
import numpy as np


class Batches(caffe.Layer):
    """data (4, 6) and label (4,): batch k drawn from RandomState(param_str + k)."""

    def setup(self, bottom, top):
        if len(bottom) != 0 or len(top) != 2:
            raise Exception("Batches: no bottoms, two tops")
        self.seed = int(self.param_str)
        self.k = 0

    def reshape(self, bottom, top):
        top[0].reshape(4, 6)
        top[1].reshape(4)

    def forward(self, bottom, top):
        r = np.random.RandomState(self.seed + self.k)
        self.k += 1
        top[0].data[...] = r.randn(4, 6)
        top[1].data[...] = r.randint(0, 3, 4)

    def backward(self, top, propagate_down, bottom):
        pass


class Twice(caffe.Layer):
    def setup(self, bottom, top):
        pass

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = 2 * bottom[0].data

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = 2 * top[0].diff
