"""Caffe layer types, one small module per type or tight family.

Importing this package registers every layer; modules are found by name so adding a
file is all it takes to add a layer family.
"""
import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    importlib.import_module(f"{__name__}.{_info.name}")
