"""`caffe.Detector`: R-CNN style windowed detection, classifying warped image crops.

pycaffe facade.  Mirrors python/caffe/detector.py.  Unlike pycaffe under Python 3,
context padding works (pycaffe slices with float indices there and raises TypeError);
selective-search proposals need the external selective_search_ijcv_with_python package.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import InputError, MissingDependencyError
from . import io as caffe_io
from .classifier import _transformer
from .net import TEST, Net


class Detector(Net):
    """`Detector(model_file, pretrained_file, mean=None, input_scale=None,
    raw_scale=None, channel_swap=None, context_pad=None)`."""

    def __init__(self, model_file: str | os.PathLike, pretrained_file: str | os.PathLike | None,
                 mean: np.ndarray | None = None, input_scale: float | None = None,
                 raw_scale: float | None = None, channel_swap: Sequence[int] | None = None,
                 context_pad: int | None = None) -> None:
        super().__init__(model_file, TEST, weights=pretrained_file)
        self.transformer = _transformer(self, mean, input_scale, raw_scale, channel_swap)
        self.configure_crop(context_pad)

    def detect_windows(self, images_windows: Iterable[tuple[str, Sequence[Sequence[int]]]]
                       ) -> list[dict[str, Any]]:
        """[{window, prediction, filename}] for every (image file, windows) pair; windows
        are (ymin, xmin, ymax, xmax), warped to the net's input size."""
        images_windows = [(f, list(ws)) for f, ws in images_windows]
        window_inputs = []
        for image_fname, windows in images_windows:
            image = caffe_io.load_image(image_fname).astype(np.float32)
            for window in windows:
                window_inputs.append(self.crop(image, window))
        if not window_inputs:
            raise InputError("Detector.detect_windows(): no windows given")
        in_ = self.inputs[0]
        caffe_in = np.zeros((len(window_inputs), window_inputs[0].shape[2])
                            + self.blobs[in_].data.shape[2:], dtype=np.float32)
        for ix, window_in in enumerate(window_inputs):
            caffe_in[ix] = self.transformer.preprocess(in_, window_in)
        predictions = self.forward_all(**{in_: caffe_in})[self.outputs[0]]
        detections = []
        ix = 0
        for image_fname, windows in images_windows:
            for window in windows:
                detections.append({"window": window, "prediction": predictions[ix],
                                   "filename": image_fname})
                ix += 1
        return detections

    def detect_selective_search(self, image_fnames: Sequence[str]) -> list[dict[str, Any]]:
        """Selective Search proposals (sergeyk/selective_search_ijcv_with_python, which
        runs MATLAB), then detect_windows."""
        try:
            import selective_search_ijcv_with_python as selective_search  # type: ignore
        except ImportError as e:
            raise MissingDependencyError(
                "Detector.detect_selective_search() needs the selective_search_ijcv_with_python "
                "package (https://github.com/sergeyk/selective_search_ijcv_with_python, with "
                "MATLAB); or compute windows yourself and call detect_windows()") from e
        image_fnames = [os.path.abspath(f) for f in image_fnames]
        windows_list = selective_search.get_windows(image_fnames, cmd="selective_search_rcnn")
        return self.detect_windows(zip(image_fnames, windows_list))

    def crop(self, im: np.ndarray, window: Sequence[int]) -> np.ndarray:
        """The window of an HxWxK image, with `context_pad` pixels of context (scaled as
        R-CNN does, out-of-image parts filled with the mean) when configured."""
        crop = im[window[0]:window[2], window[1]:window[3]]
        if self.context_pad:
            box = np.array(window, dtype=np.float64)
            crop_size = self.blobs[self.inputs[0]].width  # assumes square
            scale = crop_size / (1. * crop_size - self.context_pad * 2)
            half_h = (box[2] - box[0] + 1) / 2.
            half_w = (box[3] - box[1] + 1) / 2.
            center = (box[0] + half_h, box[1] + half_w)
            scaled_dims = scale * np.array((-half_h, -half_w, half_h, half_w))
            box = np.round(np.tile(center, 2) + scaled_dims)
            full_h = box[2] - box[0] + 1
            full_w = box[3] - box[1] + 1
            scale_h = crop_size / full_h
            scale_w = crop_size / full_w
            pad_y = int(np.rint(max(0, -box[0]) * scale_h))  # amount out-of-bounds
            pad_x = int(np.rint(max(0, -box[1]) * scale_w))
            im_h, im_w = im.shape[:2]
            box = np.clip(box, 0., [im_h, im_w, im_h, im_w])
            clip_h = box[2] - box[0] + 1
            clip_w = box[3] - box[1] + 1
            if clip_h <= 0 or clip_w <= 0:
                raise InputError(f"Detector.crop(): window {list(window)} lies outside the "
                                 f"{im_h}x{im_w} image")
            crop_h = int(np.rint(clip_h * scale_h))
            crop_w = int(np.rint(clip_w * scale_w))
            crop_h = min(crop_h, crop_size - pad_y)
            crop_w = min(crop_w, crop_size - pad_x)
            b = box.astype(int)  # pycaffe slices with these floats (TypeError on Python 3)
            context_crop = caffe_io.resize_image(im[b[0]:b[2], b[1]:b[3]], (crop_h, crop_w))
            crop = np.ones(self.crop_dims, dtype=np.float32) * self.crop_mean
            crop[pad_y:(pad_y + crop_h), pad_x:(pad_x + crop_w)] = context_crop
        return crop

    def configure_crop(self, context_pad: int | None) -> None:
        """Crop dimensions (the input's HxWxK) and, with context, the mean to pad with."""
        in_ = self.inputs[0]
        tpose = self.transformer.transpose[in_]
        inv_tpose = [tpose[t] for t in tpose]
        self.crop_dims = np.array(self.blobs[in_].data.shape[1:])[inv_tpose]
        self.context_pad = context_pad
        if self.context_pad:
            transpose = self.transformer.transpose.get(in_)
            channel_order = self.transformer.channel_swap.get(in_)
            raw_scale = self.transformer.raw_scale.get(in_)
            mean = self.transformer.mean.get(in_)
            if mean is not None:
                inv_transpose = [transpose[t] for t in transpose]
                crop_mean = mean.copy().transpose(inv_transpose)
                if channel_order is not None:
                    channel_order = list(channel_order)
                    crop_mean = crop_mean[:, :, [channel_order.index(i)
                                                 for i in range(crop_mean.shape[2])]]
                if raw_scale is not None:
                    crop_mean /= raw_scale
                self.crop_mean = crop_mean
            else:
                self.crop_mean = np.zeros(self.crop_dims, dtype=np.float32)
