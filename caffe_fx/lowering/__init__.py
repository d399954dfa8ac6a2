"""Lowering: turns the analysed layer DAG into a torch.fx GraphModule (builder.py),
one registered function per Caffe layer type (registry.py, layers/)."""
