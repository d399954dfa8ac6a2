"""The one exception hierarchy of caffe_fx.

Every error a user can cause (a bad prototxt, a corrupt caffemodel, a layer or value we
do not support, an impossible shape) raises a subclass of `CaffeFxError`.  Each class
also derives from the builtin a caller would naturally catch, so `except ValueError`
keeps working.  Messages name the file, the layer, the field and the value, and say
what is allowed.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextvars import ContextVar

# Who is calling, so that advice in a message is spelled as that caller can follow it:
# "python" (compile()'s keyword arguments: input_shapes=, trust_python_layers=) or "cli"
# (the caffe-fx command line sets it while a subcommand runs: --input-shape ...).
CALLER: ContextVar[str] = ContextVar("caffe_fx_caller", default="python")


def spelled(python: str, cli: str) -> str:
    """`python` or `cli`, the one the caller (CALLER) can follow."""
    return cli if CALLER.get() == "cli" else python

__all__ = [
    "CaffeFxError",
    "ProtoError",
    "ProtoParseError",
    "ProtoUpgradeError",
    "WeightsError",
    "NetDefinitionError",
    "UnsupportedLayerError",
    "UnsupportedFieldError",
    "NetProblemsError",
    "ShapeError",
    "InputError",
    "InputArrayError",
    "DataSourceError",
    "NetSpecError",
    "NetSpecFieldError",
    "CoordMapError",
    "CoordMapUndefinedError",
    "CoordMapAxisError",
    "CoordMapUnreachableError",
    "MemoryLimitError",
    "OutputExistsError",
    "WriteError",
    "MissingDependencyError",
    "ExportError",
    "BlobNameError",
    "DeviceError",
    "FileOpenError",
    "PycaffeNotImplementedError",
    "CaffeAliasError",
    "CaffeFxWarning",
    "IgnoredFieldWarning",
    "LayerOverrideWarning",
    "UnusedWeightsWarning",
]


class CaffeFxError(Exception):
    """Base class of every error raised by caffe_fx."""

    def __reduce__(self):  # as it is (a class's __init__ may take other arguments)
        return _restored, (type(self), self.args, self.__dict__)


def _restored(cls: type, args: tuple, state: dict) -> CaffeFxError:
    e = _bare(cls)
    e.args = args
    e.__dict__.update(state)
    return e


def with_message(e: CaffeFxError, message: str) -> CaffeFxError:
    """A copy of `e` (same class and attributes) saying `message` instead."""
    return _restored(type(e), (message,), e.__dict__)


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
        lines = "\n".join(f"  layer '{name}' (type: {kind or chr(39) * 2})"
                           for name, kind in self.layers)
        kinds = sorted({kind or "'' (no type: given)" for _, kind in self.layers})
        super().__init__(
            f"{source}: Unknown layer type{'s' if len(kinds) > 1 else ''} "
            f"{', '.join(kinds)} in {len(self.layers)} layer(s):\n{lines}\n"
            "See caffe_fx.supported_layers() for the known types; a type of your own (a "
            "TensorRT plugin, a fork layer caffe_fx lacks) can be given with "
            "caffe_fx.register_layer(TYPE, impl) or compile(..., layers={TYPE: factory})"
            + spelled(".", ", from Python: caffe-fx itself loads no layer code.")
        )


class UnsupportedFieldError(CaffeFxError, NotImplementedError):
    """A layer field or value caffe_fx does not implement (never silently ignored)."""


class NetProblemsError(CaffeFxError):
    """Every problem of one net at once, of several kinds (fields no schema knows, layer
    types caffe_fx cannot lower, dangling bottoms, shapes Caffe rejects, weights that do
    not fit...).  Raised as a class that also derives from each kind it holds, so an
    `except` for any of them catches it; `problems` holds one error per kind, `layers`
    the unknown layer types among them (as UnsupportedLayerError's)."""

    problems: list[CaffeFxError]
    layers: list[tuple[str, str]]

    def __reduce__(self):  # its class is made per set of kinds: made again from them
        return _rebuilt, (self.args[0] if self.args else "", self.problems)


def together(problems: Sequence[CaffeFxError], where: str, what: str = "net") -> CaffeFxError:
    """One error for all of `problems` of the net (or the solver: `what`) `where` names:
    a problem alone is itself; several of one class are that class, their messages one
    under another; several kinds a NetProblemsError deriving from every kind."""
    if not problems:
        raise ValueError("together() of no problems")
    kinds: dict[type, list[CaffeFxError]] = {}
    for p in problems:
        kinds.setdefault(type(p), []).append(p)
    merged = [_merged(ps) for ps in kinds.values()]
    if len(merged) == 1:
        return merged[0]
    message = f"{where}: {len(merged)} kinds of problems stop this {what}:\n" + "\n".join(
        f"({i}) " + str(e).replace("\n", "\n    ") for i, e in enumerate(merged, 1))
    return _rebuilt(message, merged)


def _merged(same: list[CaffeFxError]) -> CaffeFxError:
    """Errors of one class as one: the first's attributes, lists (`layers`) joined."""
    if len(same) == 1:
        return same[0]
    first = same[0]
    out = with_message(first, "\n".join(str(e) for e in same))
    for name, value in first.__dict__.items():
        if isinstance(value, list):
            setattr(out, name, [x for e in same for x in getattr(e, name, [])])
    return out


def _bare(cls: type) -> CaffeFxError:
    """An instance of `cls` without its __init__, made by the builtin base that owns its
    layout (OSError's for a DataSourceError, not ValueError's)."""
    for base in cls.__mro__:
        if base.__module__ == "builtins":
            try:
                return base.__new__(cls)
            except TypeError:
                continue
    raise TypeError(f"cannot make a {cls.__name__}")


_COMBINED: dict[tuple[type, ...], type] = {}


def _rebuilt(message: str, problems: Sequence[CaffeFxError]) -> NetProblemsError:
    kinds = tuple(dict.fromkeys(type(p) for p in problems))
    cls = _COMBINED.get(kinds)
    if cls is None:
        # An OSError's instance layout conflicts with the others': DataSourceError is
        # caught as the InputError it also is.
        bases = [InputError if issubclass(k, OSError) else k for k in kinds]
        bases = [b for b in dict.fromkeys(bases)
                 if not any(o is not b and issubclass(o, b) for o in bases)]
        name = f"NetProblemsError[{', '.join(k.__name__ for k in kinds)}]"
        cls = type(name, (NetProblemsError, *bases),
                   {"__module__": __name__, "__doc__": NetProblemsError.__doc__})
        _COMBINED[kinds] = cls
    e = _bare(cls)
    e.args = (message,)
    e.problems = list(problems)
    e.layers = [x for p in problems for x in getattr(p, "layers", [])]
    return e


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


class MemoryLimitError(CaffeFxError, MemoryError):
    """A net whose parameters or blobs would take more memory than the machine has
    available, refused before any of it is allocated (caffe_fx/_memory.py)."""


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


class CoordMapError(CaffeFxError, ValueError):
    """`caffe.coord_map` cannot relate two net_spec tops or crop one to the other: a scale
    or offset a Crop cannot make, paths that disagree, fields it does not read."""


class CoordMapUndefinedError(CoordMapError):
    """A layer with no coordinate map (pycaffe's coord_map.UndefinedMapException)."""


class CoordMapAxisError(CoordMapError):
    """Maps over different axes composed (pycaffe's coord_map.AxisMismatchException)."""


class CoordMapUnreachableError(CoordMapError, RuntimeError):
    """Two tops with no common ancestor through mapped layers (pycaffe raises
    RuntimeError)."""


class BlobNameError(CaffeFxError, KeyError):
    """A blob or layer name the net does not have (pycaffe's dicts raise KeyError)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


class DeviceError(CaffeFxError, RuntimeError):
    """A device that is not there: `set_mode_gpu()` on a machine without CUDA."""


class FileOpenError(CaffeFxError, RuntimeError):
    """pycaffe's `Net()` given a net or weights file it cannot open: a RuntimeError
    ("Could not open file X"), as pycaffe's CheckFile raises it."""


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
