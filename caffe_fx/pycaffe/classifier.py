"""`caffe.Classifier`: a Net that resizes, crops (or 10-crop oversamples) and classifies images.

pycaffe facade.  Mirrors python/caffe/classifier.py: a TEST-phase Net with a
Transformer on its first input (HxWxK images -> KxHxW), `predict` averaging the
predictions of the 10 oversampled crops.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from . import io as caffe_io
from .net import TEST, Net


class Classifier(Net):
    """`Classifier(model_file, pretrained_file, image_dims=None, mean=None,
    input_scale=None, raw_scale=None, channel_swap=None)`."""

    def __init__(self, model_file: str | os.PathLike, pretrained_file: str | os.PathLike | None,
                 image_dims: Sequence[int] | None = None, mean: np.ndarray | None = None,
                 input_scale: float | None = None, raw_scale: float | None = None,
                 channel_swap: Sequence[int] | None = None) -> None:
        super().__init__(model_file, TEST, weights=pretrained_file)
        in_ = self.inputs[0]
        self.transformer = _transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.crop_dims = np.array(self.blobs[in_].data.shape[2:])
        self.image_dims = self.crop_dims if image_dims is None or len(image_dims) == 0 \
            else image_dims

    def predict(self, inputs: Sequence[np.ndarray], oversample: bool = True) -> np.ndarray:
        """(N x C) predictions of `outputs[0]` for N HxWxK images: each resized to
        image_dims, then 10-crop oversampled and averaged, or centre-cropped."""
        if len(inputs) == 0:
            raise InputError("Classifier.predict(): no images given")
        input_ = np.zeros((len(inputs), self.image_dims[0], self.image_dims[1],
                           inputs[0].shape[2]), dtype=np.float32)
        for ix, in_ in enumerate(inputs):
            input_[ix] = caffe_io.resize_image(in_, self.image_dims)
        if oversample:
            input_ = caffe_io.oversample(input_, self.crop_dims)
        else:
            center = np.array(self.image_dims) / 2.0
            crop = np.tile(center, (1, 2))[0] + np.concatenate(
                [-self.crop_dims / 2.0, self.crop_dims / 2.0])
            crop = crop.astype(int)
            input_ = input_[:, crop[0]:crop[2], crop[1]:crop[3], :]
        caffe_in = np.zeros(np.array(input_.shape)[[0, 3, 1, 2]], dtype=np.float32)
        for ix, in_ in enumerate(input_):
            caffe_in[ix] = self.transformer.preprocess(self.inputs[0], in_)
        out = self.forward_all(**{self.inputs[0]: caffe_in})
        predictions = out[self.outputs[0]]
        if oversample:
            predictions = predictions.reshape((len(predictions) // 10, 10, -1)).mean(1)
        return predictions


def _transformer(net: Net, mean: np.ndarray | None, input_scale: float | None,
                 raw_scale: float | None, channel_swap: Sequence[int] | None
                 ) -> caffe_io.Transformer:
    """The Transformer Classifier and Detector set up on the net's first input."""
    in_ = net.inputs[0]
    transformer = caffe_io.Transformer({in_: net.blobs[in_].data.shape})
    transformer.set_transpose(in_, (2, 0, 1))
    if mean is not None:
        transformer.set_mean(in_, mean)
    if input_scale is not None:
        transformer.set_input_scale(in_, input_scale)
    if raw_scale is not None:
        transformer.set_raw_scale(in_, raw_scale)
    if channel_swap is not None:
        transformer.set_channel_swap(in_, channel_swap)
    return transformer
