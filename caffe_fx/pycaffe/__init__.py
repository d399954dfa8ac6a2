"""caffe_fx.pycaffe: a drop-in stand-in for BVLC pycaffe (python/caffe/), running on PyTorch."""
