"""Torch functions with Caffe's semantics where torch has no exact equivalent.

Called from generated code (so each is TorchScript-compatible, typed, and works on any
input size, as Caffe re-infers shapes on every forward) and registered as fx leaf
functions so that they appear as one readable call each.
"""
