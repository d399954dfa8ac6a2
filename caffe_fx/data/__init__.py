"""Caffe's data layers: what they read, for the tops the rest of the net is built on.

Beside the lowering stage.  For now this gives the top shapes of Data, ImageData,
HDF5Data, MemoryData and WindowData as their DataLayerSetUp computes them
(src/caffe/layers/*data_layer.cpp), so that train/test nets build without
`input_shapes=`; the layers that load batches will live here too.
"""
from __future__ import annotations

from .top_shapes import DATA_LAYER_TYPES, data_top_shapes

__all__ = ["DATA_LAYER_TYPES", "data_top_shapes"]
