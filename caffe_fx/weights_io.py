"""Weights in every dump format, and caffemodels written back: the back end of `convert`.

Reads caffemodels through frontend/read.py and writes .pt, .h5, .npz, .npy folders,
.json and .safetensors; large .pt, .npy files, stored .npz members and .safetensors are read
as copy-on-write maps of the file (frontend/mapped.py's policy) where the values can be
shared as they are (float32, C order, aligned); `save_caffemodel` writes binary and HDF5 caffemodels that real
Caffe loads.  Mirrors Net::ToProto / Net::ToHDF5 and CopyTrainedLayersFrom* in
src/caffe/net.cpp, Blob::ToProto / ShapeEquals in src/caffe/blob.cpp.
"""
from __future__ import annotations

import fnmatch
import io
import json
import math
import os
import re
import sys
import urllib.parse
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import torch
from torch import fx

from . import binding, pipeline
from ._atomic import atomic_folder, atomic_path, atomic_write, check_writable
from .binding import LayerSlots
from .errors import CaffeFxError, InputError, MissingDependencyError, WeightsError
from .frontend import mapped
from .frontend.files import check_file, path_argument
from .frontend.hdf5 import write_hdf5
from .frontend.read import NetSource, StoredBlob, describe, read_net, read_weights
from .frontend.wire import write_caffemodel
from ._limits import check_shape, max_blob_elements
from .proto import caffe_pb2

__all__ = [
    "FORMATS", "Blobs", "NetLayout", "Progress", "input_format", "net_layout",
    "output_format", "read_blobs", "save_caffemodel", "select_layers", "write_blobs",
]

Blobs = dict[str, list[StoredBlob]]  # Caffe layer name -> its blobs, in Caffe's order
FormatName = Literal["caffemodel", "hdf5", "pt", "npz", "npy", "json", "safetensors"]

# Output suffix -> format, longest first (".caffemodel.h5" before ".h5").  A folder of
# .npy files is chosen by the path itself: see output_format.
FORMATS: dict[str, FormatName] = {
    ".caffemodel.h5": "hdf5", ".caffemodel": "caffemodel", ".h5": "hdf5", ".hdf5": "hdf5",
    ".pt": "pt", ".pth": "pt", ".npz": "npz", ".json": "json", ".safetensors": "safetensors",
}
LAYER_FORMATS = ("caffemodel", "hdf5")  # keyed by Caffe layer name, blob index
JSON_FORMAT = "caffe_fx.weights"
PROGRESS_MIN_BYTES = 32 << 20


def output_format(path: str | os.PathLike) -> FormatName:
    """The format a path asks for.  A folder of `<key>.npy` files when the path ends with
    a separator, is an existing folder, or has no suffix at all; otherwise by suffix."""
    s = os.fspath(path)
    if s.endswith(("/", os.sep)) or Path(s).is_dir() or not Path(s).suffix:
        return "npy"
    for suffix, fmt in FORMATS.items():
        if s.lower().endswith(suffix):
            return fmt
    raise InputError(
        f"{s}: unknown output suffix '{Path(s).suffix}'; allowed: "
        f"{', '.join(FORMATS)}, or a folder (a path ending in '/' or without a suffix) "
        "for one .npy file per blob")


def input_format(path: str | os.PathLike) -> FormatName:
    """The format of an existing weights file: caffemodels are sniffed by read_weights
    (binary, or HDF5 by its signature); the dump formats go by suffix."""
    p = Path(path)
    if not p.exists():
        raise WeightsError(f"{p}: no such weights file")
    if p.is_dir():
        return "npy"
    low = p.name.lower()
    for suffix in (".pt", ".pth", ".npz", ".json", ".safetensors"):
        if low.endswith(suffix):
            return FORMATS[suffix]
    return "caffemodel"  # .caffemodel, .caffemodel.h5, .h5, or any name: sniffed


class Progress:
    """A plain progress bar on stderr, shown only when stderr is a terminal and the work
    is large (`PROGRESS_MIN_BYTES`); otherwise every call does nothing."""

    def __init__(self, total: int, label: str, stream: IO[str] | None = None,
                 min_bytes: int = PROGRESS_MIN_BYTES) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.total, self.label, self.done = max(int(total), 1), label, 0
        isatty = getattr(self.stream, "isatty", None)
        self.active = bool(isatty and isatty()) and total >= min_bytes
        self._shown = -1

    def advance(self, nbytes: int) -> None:
        if not self.active:
            return
        self.done = min(self.done + int(nbytes), self.total)
        pct = 100 * self.done // self.total
        if pct != self._shown:
            self._shown = pct
            bar = "#" * (pct * 30 // 100)
            self.stream.write(f"\r{self.label} [{bar:<30}] {pct:3d}% "
                              f"{self.done >> 20}/{self.total >> 20} MiB")
            self.stream.flush()

    def close(self) -> None:
        if self.active and self._shown >= 0:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- net layout

@dataclass(frozen=True)
class NetLayout:
    """The blobs a net expects, as caffe_fx.compile would build it (shapes only)."""

    source: str
    layers: dict[str, LayerSlots]  # layers with blobs only
    keys: dict[str, tuple[str, int]]  # state_dict key -> (layer, blob index)


def net_layout(prototxt: NetSource, phase: str = "test",
               caffe_proto: str | os.PathLike | None = None) -> NetLayout:
    """Runs the compiler's pipeline on meta tensors (no filler, no allocation) to learn
    each layer's submodule, blob names and shapes, exactly as compile() names them."""
    prepared = pipeline.prepare(prototxt, phase=phase, caffe_proto=caffe_proto)
    built = pipeline.lower(prepared)
    layers = {name: slots for name, slots in binding.slots_of(built, prepared.net).items()
              if slots.attrs}
    keys = {f"{slots.module}.{a}": (name, i) for name, slots in layers.items()
            for i, a in enumerate(slots.attrs)}
    return NetLayout(prepared.where, layers, keys)


def _fit(layout: NetLayout, blobs: Mapping[str, Sequence[StoredBlob]], where: str
         ) -> dict[str, list[np.ndarray]]:
    """The layers of `blobs` that the net has, in the net's order and shapes, checked as
    CopyTrainedLayersFrom does (every layer that does not fit named at once); dump files
    lose the legacy flag, so any 4-D array gets ShapeEquals' leeway."""
    ordered = {name: blobs[name] for name in layout.layers if name in blobs}
    fitted = binding.fit_layers(ordered, layout.layers, where, legacy_unknown=True)
    return {name: [a for a in arrays if a is not None] for name, arrays in fitted.items()}


# --------------------------------------------------------------------------- keys

_LAYER_KEY = re.compile(r"^(?P<layer>.+)\.(?P<index>\d+)$")


def flat_to_blobs(arrays: Mapping[str, np.ndarray], where: str,
                  layout: NetLayout | None = None) -> Blobs:
    """Keys `<layer>.<index>` (or, with a layout, a compiled net's state_dict names such as
    `conv1.weight`) -> {layer: blobs}.  Every blob of a layer must be present."""
    indexed: dict[str, dict[int, np.ndarray]] = {}
    unknown = []
    problems: list[str] = []  # every key that cannot be placed, reported at once
    for key, arr in arrays.items():
        if layout is not None and key in layout.keys:
            layer, index = layout.keys[key]
        elif (m := _LAYER_KEY.match(key)) and (layout is None or m["layer"] in layout.layers):
            layer, index = m["layer"], int(m["index"])
        else:
            unknown.append(key)
            continue
        if index in indexed.setdefault(layer, {}):
            problems.append(f"{where}: layer '{layer}' blob {index} is given twice (key "
                            f"'{key}' and another)")
            continue
        indexed[layer][index] = np.asarray(arr)
    if unknown:
        shown = ", ".join(repr(k) for k in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        if layout is None:
            problems.insert(0,
                f"{where}: {len(unknown)} key(s) are not '<layer>.<blob index>': {shown}; "
                "keys named after a compiled net's state_dict need that net: pass the "
                "prototxt (--prototxt NET)")
        else:
            problems.insert(0,
                f"{where}: {len(unknown)} key(s) name no blob of {layout.source}: {shown}; "
                f"allowed: state_dict keys ({', '.join(list(layout.keys)[:6])}, ...) or "
                "'<layer>.<blob index>'")
    for layer, by_index in indexed.items():
        if sorted(by_index) != list(range(len(by_index))):
            problems.append(
                f"{where}: layer '{layer}' has blobs {sorted(by_index)}; blob indices must "
                f"be 0..{len(by_index) - 1} without gaps")
    if problems:
        raise WeightsError("\n".join(problems))
    out: Blobs = {}
    for layer, by_index in indexed.items():
        out[layer] = [StoredBlob(_as_float32(by_index[i], f"{where}: layer '{layer}' blob {i}"),
                                 False) for i in range(len(by_index))]
    if layout is not None:  # the net's order, and the net's shapes
        out = {name: [StoredBlob(a, False) for a in arrays]
               for name, arrays in _fit(layout, out, where).items()}
    return out


def blobs_to_flat(blobs: Blobs, where: str, layout: NetLayout | None = None
                  ) -> tuple[dict[str, np.ndarray], list[str]]:
    """{layer: blobs} -> ({key: array}, layers skipped).  Keys are `<layer>.<index>` with
    the stored shapes, or with a layout the state_dict keys of compile(NET) in the net's
    shapes (so `gm.load_state_dict(...)` takes them); layers the net lacks are skipped,
    as Caffe skips them."""
    if layout is None:
        return {f"{layer}.{i}": b.array for layer, bl in blobs.items()
                for i, b in enumerate(bl)}, []
    flat: dict[str, np.ndarray] = {}
    skipped = [name for name in blobs if name not in layout.layers]
    for name, arrays in _fit(layout, blobs, where).items():
        slots = layout.layers[name]
        for attr, arr in zip(slots.attrs, arrays):
            flat[f"{slots.module}.{attr}"] = arr
    return flat, skipped


def select_layers(blobs: Blobs, patterns: Iterable[str], where: str) -> Blobs:
    """Keeps the layers matching any of the names or shell globs (fnmatch, case-sensitive);
    a pattern that matches no layer is an error listing the layers there are."""
    patterns = [p for p in patterns if p]
    missing = [p for p in patterns if not any(fnmatch.fnmatchcase(n, p) for n in blobs)]
    if missing:
        raise InputError(
            f"{where}: --layers {','.join(missing)} matches no layer with weights; "
            f"available: {', '.join(blobs) or '(none)'}")
    return {n: b for n, b in blobs.items() if any(fnmatch.fnmatchcase(n, p) for p in patterns)}


def _as_float32(arr: Any, where: str) -> np.ndarray:
    if isinstance(arr, StoredBlob):
        arr = arr.array
    if isinstance(arr, torch.Tensor):
        if arr.is_complex():  # .to(float32) would drop the imaginary part with a warning
            raise WeightsError(f"{where}: holds {str(arr.dtype).replace('torch.', '')} "
                               "values; Caffe blobs hold numbers")
        arr = arr.detach().to("cpu", torch.float32).numpy()
    a = np.asarray(arr)
    if a.dtype.kind not in "fiub":
        raise WeightsError(f"{where}: holds {a.dtype} values; Caffe blobs hold numbers")
    return np.ascontiguousarray(a, dtype=np.float32)


# --------------------------------------------------------------------------- reading

def read_blobs(path: str | os.PathLike, layout: NetLayout | None = None) -> Blobs:
    """Any weights file caffe_fx writes or Caffe reads -> {layer: blobs}."""
    fmt = input_format(path)
    if fmt in LAYER_FORMATS:
        # Layers without blobs (data, ReLU, ...) are part of a caffemodel's net, not weights.
        blobs = {n: b for n, b in read_weights(path).items() if b}
        if layout is not None:
            skipped = {n: b for n, b in blobs.items() if n not in layout.layers}
            blobs = {n: [StoredBlob(a, False) for a in arrays]
                     for n, arrays in _fit(layout, blobs, os.fspath(path)).items()}
            blobs.update(skipped)  # kept (and reported) by the caller
        return blobs
    return flat_to_blobs(read_flat(path, fmt), os.fspath(path), layout)


def read_flat(path: str | os.PathLike, fmt: FormatName) -> dict[str, np.ndarray]:
    p = Path(path)
    if fmt == "npy":
        if not p.is_dir():
            raise WeightsError(f"{p}: not a folder of .npy files")
    else:
        p = check_file(p, f"{fmt} weights", WeightsError)
    try:
        if fmt == "pt":
            # mmap: torch's own copy-on-write map (zip-format files; legacy ones are read)
            obj = torch.load(p, map_location="cpu", weights_only=True,
                             mmap=mapped.wanted(p.stat().st_size) and zipfile.is_zipfile(p))
            if not isinstance(obj, Mapping) or not all(
                    isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
                raise WeightsError(f"{p}: holds a {type(obj).__name__}, not a dict of tensors "
                                   "(a state_dict)")
            for k, v in obj.items():
                _check_stored_tensor(v, f"{p}: '{k}'")
            return {k: _as_float32(v, f"{p}: '{k}'") for k, v in obj.items()}
        if fmt == "npz":
            _check_npz(p)
            with np.load(p, allow_pickle=False) as f:
                shared = _mapped_npz(p) if mapped.wanted(p.stat().st_size) else {}
                return {k: shared[k] if k in shared else f[k] for k in f.files}
        if fmt == "npy":
            files = sorted(p.glob("*.npy"))
            if not files:
                raise WeightsError(f"{p}: a folder without .npy files")
            out = {}
            for f in files:
                check_file(f, "npy weights", WeightsError)
                with open(f, "rb") as fh:
                    _check_npy_header(fh, f.stat().st_size, f"{f}")
                mode = "c" if mapped.wanted(f.stat().st_size) else None  # copy-on-write
                out[urllib.parse.unquote(f.name[:-4])] = np.load(f, mmap_mode=mode,
                                                                 allow_pickle=False)
            return out
        if fmt == "json":
            return _read_json(p)
        if fmt == "safetensors":
            if mapped.wanted(p.stat().st_size):
                return _mapped_safetensors(p)
            return _safetensors("numpy").load_file(str(p))
    except CaffeFxError:
        raise
    except Exception as e:  # whatever torch.load, numpy, json or zipfile raise
        first = (str(e).strip().splitlines() or [""])[0]  # torch's run over many lines
        raise WeightsError(f"{p}: unreadable {fmt} weights file: "
                           f"{type(e).__name__}: {first}") from e
    raise AssertionError(fmt)


def _mapped_npz(p: Path) -> dict[str, np.ndarray]:
    """The members of an .npz stored without compression (np.savez, caffe_fx's writer)
    holding float32 in C order, as views of one copy-on-write map of the file (copied
    when a member's values sit off a 4-byte boundary, as zip offsets often do)."""
    import struct

    buf = mapped.map_path(p)
    if buf is None:
        return {}
    out = {}
    with zipfile.ZipFile(p) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                    else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(fh)
                header = fh.tell()
            if fortran or dtype != np.dtype("<f4"):
                continue
            # the local header's name and extra field may differ from the directory's
            local = bytes(buf[info.header_offset:info.header_offset + 30])
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len + header
            count = math.prod(shape)
            if local[:4] != b"PK\x03\x04" or start + 4 * count > buf.size:
                continue
            out[info.filename[:-4]] = mapped.view(buf, start, count).reshape(shape)
    return out


def _mapped_safetensors(p: Path) -> dict[str, np.ndarray]:
    """safetensors' own loader over its copy-on-write map of the file (framework "pt":
    torch.UntypedStorage.from_file, MAP_PRIVATE); float32 tensors are returned as
    NumPy views of it, others converted."""
    out = {}
    with _safetensors("torch").safe_open(str(p), framework="pt") as f:
        for key in f.keys():
            t = f.get_tensor(key)
            if t.dtype != torch.float32 or t.data_ptr() % 4:
                t = t.to(torch.float32, copy=True)
            out[key] = t.numpy()
    return out


def _check_stored_tensor(t: torch.Tensor, where: str) -> None:
    """A tensor whose elements need more bytes than its storage holds (an expanded,
    stride-0 tensor saved as such) would be materialised here: refused, so memory stays
    proportional to what the file stores."""
    check_shape(tuple(t.shape), where)
    needed = t.numel() * t.element_size()
    stored = t.untyped_storage().nbytes()
    if needed > stored:
        raise WeightsError(
            f"{where}: a tensor of shape {list(t.shape)} and strides {list(t.stride())} "
            f"over a storage of {stored} bytes (an expanded view; its values need "
            f"{needed}); allowed: tensors that own their values (save t.contiguous())")


# Deflate expands data at most ~1032 times; members that claim more are refused, and so
# are members over 16 MiB expanding more than 100 times (real weights barely compress:
# such a member is a decompression bomb, not a net).
_MAX_EXPANSION = 1100
_LARGE_MEMBER, _MAX_LARGE_EXPANSION = 16 << 20, 100


def _check_npz(p: Path) -> None:
    """The zip directory's declared sizes and each .npy header's shape, checked against
    the bytes stored before NumPy allocates anything (a deflate bomb, a lying header)."""
    try:
        with zipfile.ZipFile(p) as zf:
            for info in zf.infolist():
                where = f"{p}: member {info.filename}"
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > _MAX_EXPANSION or (info.file_size > _LARGE_MEMBER
                                              and ratio > _MAX_LARGE_EXPANSION):
                    raise WeightsError(
                        f"{where} declares {info.file_size} bytes from {info.compress_size} "
                        f"compressed ones ({ratio:.0f} times); allowed: at most "
                        f"{_MAX_LARGE_EXPANSION} times for members over {_LARGE_MEMBER} "
                        "bytes (a decompression bomb, or a corrupt .npz)")
                if info.file_size > max_blob_elements() * 8 + (1 << 20):
                    raise WeightsError(f"{where} declares {info.file_size} bytes, more than "
                                       "a blob may hold")
                if info.filename.endswith(".npy"):
                    with zf.open(info) as fh:
                        _check_npy_header(fh, info.file_size, where)
    except zipfile.BadZipFile as e:
        raise WeightsError(f"{p}: unreadable npz weights file: {e}") from e


def _check_npy_header(fh: IO[bytes], size: int, where: str) -> None:
    """An .npy header whose shape needs more bytes than the member holds is refused."""
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) \
            else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    except (ValueError, SyntaxError, TypeError, OSError) as e:
        raise WeightsError(f"{where}: not an .npy array: {e}") from e
    check_shape(shape, where)
    if dtype.hasobject:
        raise WeightsError(f"{where}: holds Python objects (a pickle); Caffe blobs hold numbers")
    needed = math.prod(shape) * dtype.itemsize
    if needed > size:
        raise WeightsError(f"{where}: its header declares shape {list(shape)} ({needed} bytes) "
                           f"but it holds {size} bytes")


def _read_json(p: Path) -> dict[str, np.ndarray]:
    doc = json.loads(p.read_text())
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
        raise WeightsError(f"{p}: not a caffe_fx weights JSON file (expected "
                           f"{{\"format\": \"{JSON_FORMAT}\", \"tensors\": ...}})")
    out = {}
    for key, t in doc["tensors"].items():
        arr = np.asarray(t["data"], dtype=np.float32)
        if arr.size != int(np.prod(t["shape"], dtype=np.int64)):
            raise WeightsError(f"{p}: '{key}' has {arr.size} values for shape {t['shape']}")
        out[key] = arr.reshape(t["shape"])
    return out


def _safetensors(flavour: str) -> Any:
    try:
        import importlib

        return importlib.import_module(f"safetensors.{flavour}")
    except ImportError as e:
        raise MissingDependencyError(
            "the .safetensors format needs the optional package 'safetensors': "
            "pip install safetensors") from e


# --------------------------------------------------------------------------- writing

def write_flat(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], fmt: FormatName,
               *, force: bool = False, progress: Progress | None = None) -> None:
    """Writes {key: array} as one dump format, atomically; refuses to overwrite unless
    `force`.  Arrays are written as float32."""
    prog = progress or Progress(0, "", min_bytes=1 << 62)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    if fmt == "npy":
        _write_npy_folder(Path(path), arrays, force, prog)
        return
    check_writable(path, force)
    # torch.save and safetensors serialize into memory first, then one write: on a full
    # disk their own file writers raise RuntimeError / SafetensorError (and torch's can
    # abort the process), where a plain write's OSError becomes a WriteError.
    if fmt == "pt":
        buf = io.BytesIO()
        torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, buf)
        with atomic_write(path, force=force) as f:
            f.write(buf.getbuffer())
        prog.advance(sum(a.nbytes for a in arrays.values()))
    elif fmt == "npz":
        with atomic_path(path, force=force) as tmp, \
                zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, arr in arrays.items():  # what np.savez does, one entry at a time
                with zf.open(key + ".npy", "w", force_zip64=True) as fid:
                    np.lib.format.write_array(fid, arr, allow_pickle=False)
                prog.advance(arr.nbytes)
    elif fmt == "json":
        with atomic_write(path, force=force, text=True) as f:
            f.write(f'{{"format": "{JSON_FORMAT}", "version": 1, "tensors": {{')
            for n, (key, arr) in enumerate(arrays.items()):
                # float32 -> Python float is exact, and json prints it so it reads back
                # to the same float32.
                f.write(("," if n else "") + f"\n{json.dumps(key)}: " + json.dumps(
                    {"shape": list(arr.shape), "data": arr.tolist()}))
                prog.advance(arr.nbytes)
            f.write("\n}}\n")
    elif fmt == "safetensors":
        st = _safetensors("numpy")
        data = st.save(dict(arrays), metadata={"format": JSON_FORMAT})
        with atomic_write(path, force=force) as f:
            f.write(data)
        prog.advance(sum(a.nbytes for a in arrays.values()))
    else:
        raise InputError(f"{path}: cannot write format {fmt!r} as a flat file")
    prog.close()


def _write_npy_folder(folder: Path, arrays: Mapping[str, np.ndarray], force: bool,
                      prog: Progress) -> None:
    """One `<key>.npy` per blob; a `/` in a key (GoogLeNet's `inception_3a/1x1`) is
    written %2F, and `%` as %25, so file names map back to keys.  Nothing in the folder
    is deleted; files of these names are replaced only with `force`.  A new folder is
    written whole under a temporary name and renamed (all or nothing); into an existing
    one, each file is replaced atomically."""
    if folder.exists() and not folder.is_dir():
        check_writable(folder, force=False)
    names = {key: folder / (urllib.parse.quote(key, safe="") + ".npy") for key in arrays}
    if not force:
        taken = [str(p) for p in names.values() if p.exists()]
        if taken:
            check_writable(taken[0])
    if not folder.exists():  # a new folder appears whole, or not at all
        with atomic_folder(folder) as tmp:
            for key, arr in arrays.items():
                with open(tmp / names[key].name, "wb") as f:
                    np.lib.format.write_array(f, arr, allow_pickle=False)
                prog.advance(arr.nbytes)
        prog.close()
        return
    for key, arr in arrays.items():
        with atomic_write(names[key], force=force) as f:
            np.lib.format.write_array(f, arr, allow_pickle=False)
        prog.advance(arr.nbytes)
    prog.close()


# --------------------------------------------------------------------------- caffemodels

def _arrays(blobs: Mapping[str, Sequence[StoredBlob]]
            ) -> list[tuple[str, list[np.ndarray | None]]]:
    return [(name, [b.array for b in layer]) for name, layer in blobs.items()]


WeightsOrModule = fx.GraphModule | Mapping[str, Sequence[Any]]


def _module_blobs(gm: fx.GraphModule) -> Blobs:
    info = gm.meta.get("caffe") if hasattr(gm, "meta") else None
    if info is None:
        raise InputError(
            f"a {type(gm).__name__} without meta['caffe']: save_caffemodel takes a "
            "GraphModule from caffe_fx.compile() or a mapping {layer name: [arrays]}")
    out: Blobs = {}
    for layer, mod_name in info.modules.items():
        module: Any = gm.get_submodule(mod_name)
        out[layer] = [StoredBlob(_as_float32(t, f"layer '{layer}'"), False)
                      for t in module.blob_tensors()]
    return out


def to_blobs(weights_or_module: WeightsOrModule | Blobs) -> Blobs:
    """A compiled GraphModule, or {layer: [arrays, tensors or StoredBlobs]} -> Blobs."""
    if isinstance(weights_or_module, torch.nn.Module):
        return _module_blobs(weights_or_module)  # type: ignore[arg-type]
    if not isinstance(weights_or_module, Mapping):
        raise InputError(
            f"save_caffemodel: weights_or_module is a {type(weights_or_module).__name__}; "
            "allowed: a GraphModule from caffe_fx.compile(), or {layer name: [arrays]}")
    out: Blobs = {}
    for name, blobs in weights_or_module.items():
        if isinstance(blobs, (np.ndarray, torch.Tensor)):
            raise InputError(f"save_caffemodel: layer '{name}' maps to one array; give a list "
                             "of its blobs in Caffe's order ([weight, bias])")
        out[name] = [b if isinstance(b, StoredBlob)
                     else StoredBlob(_as_float32(b, f"layer '{name}' blob {i}"), False)
                     for i, b in enumerate(blobs)]
    return out


def save_caffemodel(
    path: str | os.PathLike,
    weights_or_module: WeightsOrModule,
    prototxt: NetSource | None = None,
    *,
    format: Literal["binary", "hdf5"] = "binary",
    force: bool = False,
) -> Path:
    """Writes weights as a caffemodel that real Caffe loads (`net.copy_from`,
    `caffe.Net(proto, weights, TEST)`, `caffe test -weights`).

    Args:
        path: the file to write; an existing file is replaced only with `force=True`.
        weights_or_module: a GraphModule from `caffe_fx.compile()` (its layers' blobs, by
            `gm.meta["caffe"]`), or a mapping {layer name: [arrays or tensors]} in Caffe's
            blob order, as `compile(weights=...)` takes.
        prototxt: the net (path, text or NetParameter).  Given, the file holds the whole
            upgraded net as Caffe's snapshots do (every layer's name, type, bottoms, tops
            and parameters, in the net's order, blobs on the layers that have weights) and
            weights for layers the net lacks are an error.  Without it, each layer holds
            only its name and blobs (Caffe matches weights by name alone).
        format: "binary" (a NetParameter, as Net::ToProto + WriteProtoToBinaryFile) or
            "hdf5" (/data/<layer>/<i>, as Net::ToHDF5; no '/' in layer names).

    Returns the path written.  Blobs are written as float32 with their shapes (`shape`,
    or legacy num/channels/height/width for blobs read that way from an old caffemodel).
    """
    if isinstance(path, (torch.nn.Module, Mapping)):
        raise InputError(f"save_caffemodel: path is {type(path).__name__}; the file comes "
                         "first: save_caffemodel(path, weights_or_module)")
    path_argument(path, "save_caffemodel: path", InputError)
    if format not in ("binary", "hdf5"):
        raise InputError(f"save_caffemodel: format = {format!r}; allowed: 'binary', 'hdf5'")
    return _save(Path(path), to_blobs(weights_or_module), prototxt, format, force, None)


def _save(path: Path, blobs: Blobs, prototxt: NetSource | None, fmt: str, force: bool,
          progress: Progress | None) -> Path:
    check_writable(path, force)
    prog = progress or Progress(0, "", min_bytes=1 << 62)
    if prototxt is not None:
        net = read_net(prototxt)
        names = {lp.name for lp in net.layer}
        extra = [n for n in blobs if n not in names]
        if extra:
            raise WeightsError(
                f"{describe(prototxt)}: the weights hold layers the net lacks: "
                f"{', '.join(extra)}; layers of the net: {', '.join(lp.name for lp in net.layer)}")
        if fmt == "hdf5":
            seen: set[str] = set()
            ordered = {}
            for lp in net.layer:
                if lp.name in blobs and lp.name not in seen:
                    seen.add(lp.name)
                    ordered[lp.name] = blobs[lp.name]
            write_hdf5(path, _arrays(ordered), force=force, advance=prog.advance)
        else:
            header = caffe_pb2.NetParameter()
            header.CopyFrom(net)
            del header.layer[:]
            layers = []
            for lp in net.layer:
                copy = caffe_pb2.LayerParameter()
                copy.CopyFrom(lp)
                del copy.blobs[:]
                layers.append((copy, blobs.get(lp.name, [])))
            with atomic_write(path, force=force) as f:
                write_caffemodel(f, header, layers, prog.advance)
    elif fmt == "hdf5":
        write_hdf5(path, _arrays(blobs), force=force, advance=prog.advance)
    else:
        layers = [(caffe_pb2.LayerParameter(name=name), b) for name, b in blobs.items()]
        with atomic_write(path, force=force) as f:
            write_caffemodel(f, caffe_pb2.NetParameter(), layers, prog.advance)
    prog.close()
    return path


def write_blobs(path: str | os.PathLike, blobs: Blobs, fmt: FormatName, *,
                layout: NetLayout | None = None, prototxt: NetSource | None = None,
                force: bool = False, progress: Progress | None = None
                ) -> tuple[int, list[str]]:
    """{layer: blobs} -> any format.  Returns (number of arrays written, layers skipped
    because the net lacks them)."""
    where = os.fspath(path)
    if fmt in LAYER_FORMATS:
        skipped: list[str] = []
        if layout is not None:
            skipped = [n for n in blobs if n not in layout.layers]
            blobs = {n: b for n, b in blobs.items() if n in layout.layers}
        _save(Path(path), blobs, prototxt,
              "hdf5" if fmt == "hdf5" else "binary", force, progress)
        return sum(len(b) for b in blobs.values()), skipped
    flat, skipped = blobs_to_flat(blobs, where, layout)
    write_flat(path, flat, fmt, force=force, progress=progress)
    return len(flat), skipped
