"""caffe_fx: Caffe nets as torch.fx GraphModules that compute what Caffe computes.

    import caffe_fx
    gm = caffe_fx.compile("deploy.prototxt", "weights.caffemodel")
    probs = gm(data=images)["prob"]
"""
from . import errors
from .compiler import compile  # noqa: A004
from .lowering.registry import supported_layers
from .weights_io import save_caffemodel

__all__ = ["compile", "errors", "save_caffemodel", "supported_layers", "__version__"]
__version__ = "0.1.0"
