"""Caffe's data layers: their top shapes, and the batches that feed them at runtime.

Beside the lowering stage.  top_shapes.py gives the top shapes of Data, ImageData,
HDF5Data, MemoryData, WindowData and SegNet's DenseImageData as their DataLayerSetUp
computes them, so that train/test nets build without `input_shapes=`; feed.py reads
their batches in Caffe's order, transformed as DataTransformer does
(src/caffe/layers/*data_layer.cpp, src/caffe/data_transformer.cpp), in a background
thread; _rng.py holds Caffe's process-wide random seed (set_random_seed).
"""
from __future__ import annotations

from ._rng import random_seed, set_random_seed
from .feed import DataFeed, open_feed
from .top_shapes import DATA_LAYER_TYPES, data_top_shapes

__all__ = ["DATA_LAYER_TYPES", "DataFeed", "data_top_shapes", "open_feed", "random_seed",
           "set_random_seed"]
