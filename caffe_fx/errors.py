"""The one exception hierarchy of caffe_fx.

Every error a user can cause (a bad prototxt, a corrupt caffemodel, a layer or value we
do not support, an impossible shape) raises a subclass of `CaffeFxError`.  Each class
also derives from the builtin a caller would naturally catch, so `except ValueError`
keeps working.  Messages name the file, the layer, the field and the value, and say
what is allowed.
"""
from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar

# Who is calling, so that advice in a message is spelled as that caller can follow it:
# "python" (compile()'s keyword arguments: input_shapes=, trust_python_layers=) or "cli"
# (the caffe-fx command line sets it while a subcommand runs: --input-shape ...).
CALLER: ContextVar[str] = ContextVar("caffe_fx_caller", default="python")

__all__ = [
    "CaffeFxError",
    "ProtoError",
    "ProtoParseError",
    "ProtoUpgradeError",
    "WeightsError",
    "NetDefinitionError",
    "UnsupportedLayerError",
    "UnsupportedFieldError",
    "UnsupportedNetError",
    "ShapeError",
    "InputError",
    "InputArrayError",
    "DataSourceError",
    "NetSpecError",
    "NetSpecFieldError",
    "OutputExistsError",
    "WriteError",
    "MissingDependencyError",
    "ExportError",
    "BlobNameError",
    "DeviceError",
    "PycaffeNotImplementedError",
    "CaffeAliasError",
    "CaffeFxWarning",
    "IgnoredFieldWarning",
    "LayerOverrideWarning",
    "UnusedWeightsWarning",
]


class CaffeFxError(Exception):
    """Base class of every error raised by caffe_fx."""


class ProtoError(CaffeFxError, ValueError):
    """A NetParameter (or a file claiming to be one) cannot be used."""


class ProtoParseError(ProtoError):
    """Text or binary protobuf that does not parse; names file, line and column."""


class ProtoUpgradeError(ProtoError):
    """A legacy (V0/V1) net that Caffe's own upgrade code would reject."""


class WeightsError(CaffeFxError, ValueError):
    """A caffemodel that is truncated, corrupt, or does not fit the net."""


class NetDefinitionError(CaffeFxError, ValueError):
    """A net whose wiring Caffe rejects: dangling bottoms, tops produced twice, bad counts."""


class UnsupportedLayerError(CaffeFxError, NotImplementedError):
    """Layer types caffe_fx cannot lower; lists every offending layer at once."""

    def __init__(self, layers: Iterable[tuple[str, str]], source: str = "<net>"):
        self.layers = list(layers)
        lines = "\n".join(f"  layer '{name}' (type: {kind})" for name, kind in self.layers)
        kinds = sorted({kind for _, kind in self.layers})
        super().__init__(
            f"{source}: Unknown layer type{'s' if len(kinds) > 1 else ''} "
            f"{', '.join(kinds)} in {len(self.layers)} layer(s):\n{lines}\n"
            "See caffe_fx.supported_layers() for the known types; a type of your own (a "
            "TensorRT plugin, a fork layer caffe_fx lacks) can be given with "
            "caffe_fx.register_layer(TYPE, impl) or compile(..., layers={TYPE: factory})."
        )


class UnsupportedFieldError(CaffeFxError, NotImplementedError):
    """A layer field or value caffe_fx does not implement (never silently ignored)."""


class UnsupportedNetError(UnsupportedLayerError, UnsupportedFieldError, ProtoParseError):
    """Every problem of one net at once, of several kinds: fields no schema knows, layer
    types caffe_fx cannot lower, fields a layer does not read, Python layers not
    trusted.  Caught by an `except` for any of those kinds."""

    def __init__(self, message: str, layers: Iterable[tuple[str, str]] = ()):
        self.layers = list(layers)
        CaffeFxError.__init__(self, message)


class ShapeError(CaffeFxError, ValueError):
    """Shapes Caffe would reject (a CHECK failure in Reshape), or that cannot be inferred."""


class InputError(CaffeFxError, ValueError):
    """Bad arguments to a compiled net or to compile(): names, counts, shapes."""


class InputArrayError(InputError, RuntimeError):
    """Arrays pycaffe's C++ side rejects (`set_input_arrays`: not float32, not 4-D, wrong
    C/H/W, batch not a multiple); pycaffe raises RuntimeError for them."""


class DataSourceError(InputError, OSError):
    """A data layer's source (a database, a list file, an image, an HDF5 file) that cannot
    be read for its tops' shapes; names the layer, the field and the path, and says that
    `input_shapes=` can give the shapes instead."""


class OutputExistsError(CaffeFxError, FileExistsError):
    """A file would be overwritten; writers refuse unless asked (`force=True`, `--force`)."""


class WriteError(CaffeFxError, OSError):
    """An output that cannot be written: a read-only or unusable folder, a full disk;
    names the path and the system's reason."""


class MissingDependencyError(CaffeFxError, ImportError):
    """An optional package (onnx, the graphviz `dot` binary, ...) is needed and absent;
    names what to install."""


class ExportError(CaffeFxError, RuntimeError):
    """An exported program fails, or does not reproduce the GraphModule's outputs."""


class NetSpecError(CaffeFxError, TypeError, ValueError):
    """A net_spec layer pycaffe rejects too: a bottom that is not a Top, a value protobuf
    will not store in its field (pycaffe raises the bare TypeError/ValueError)."""


class NetSpecFieldError(CaffeFxError, AttributeError):
    """A net_spec keyword that names no field of the layer's `*_param` message nor of
    LayerParameter (pycaffe raises protobuf's AttributeError)."""


class BlobNameError(CaffeFxError, KeyError):
    """A blob or layer name the net does not have (pycaffe's dicts raise KeyError)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class DeviceError(CaffeFxError, RuntimeError):
    """A device that is not there: `set_mode_gpu()` on a machine without CUDA."""


class PycaffeNotImplementedError(CaffeFxError, NotImplementedError):
    """A part of pycaffe's surface that caffe_fx.pycaffe does not implement yet."""


class CaffeAliasError(CaffeFxError, ImportError):
    """`import caffe` cannot be pointed at caffe_fx.pycaffe: a real `caffe` is already
    imported, or a `caffe.*` submodule the facade does not provide was asked for."""


class CaffeFxWarning(UserWarning):
    """Base class of every warning caffe_fx issues (filter with `warnings.simplefilter`)."""


class LayerOverrideWarning(CaffeFxWarning):
    """caffe_fx.register_layer (or compile's layers=) replaces a layer type built into
    caffe_fx."""


class IgnoredFieldWarning(CaffeFxWarning):
    """A layer sets LayerParameter fields its type does not read (Caffe ignores them too:
    a loss_param on a Softmax); compile() lists them all in one warning."""


class UnusedWeightsWarning(CaffeFxWarning):
    """compile() got weights that leave layers of the net unfilled (they keep Caffe's
    fillers) or hold layers the net does not have (Caffe: "Ignoring source layer");
    `strict=True` makes it a WeightsError."""
