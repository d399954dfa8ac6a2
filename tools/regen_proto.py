"""Regenerates caffe_fx/proto/caffe.proto, caffe_pb2.py and dialect_fields.py.

The schema is taken from the descriptor compiled into the reference Caffe's own
caffe_pb2 (BVLC Caffe 1.0, installed by ../shared/caffe-oracle), the fork fields of
caffe_fx/proto/dialects.proto are merged into it (that file says how), and the result is
written back out as .proto text, then compiled with grpcio-tools' bundled protoc.
dialect_fields.py lists every merged field with its fork.  Developer tool only: the
package ships every output, so users never need protoc.

    python tools/regen_proto.py [--caffe-root /opt/caffe-ref]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "caffe_fx" / "proto"

_TYPES = {
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE: "double",
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT: "float",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64: "int64",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64: "uint64",
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32: "int32",
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL: "bool",
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING: "string",
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES: "bytes",
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32: "uint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT32: "sint32",
    descriptor_pb2.FieldDescriptorProto.TYPE_SINT64: "sint64",
}
_LABELS = {1: "optional", 2: "required", 3: "repeated"}


def _field(f: descriptor_pb2.FieldDescriptorProto, note: str = "") -> str:
    kind = f.type_name.lstrip(".").removeprefix("caffe.") if f.type_name else _TYPES[f.type]
    opts = []
    if f.HasField("default_value"):
        value = f.default_value
        if f.type == f.TYPE_STRING:
            value = '"%s"' % value
        opts.append("default = %s" % value)
    if f.options.HasField("packed"):
        opts.append("packed = %s" % ("true" if f.options.packed else "false"))
    tail = " [%s]" % ", ".join(opts) if opts else ""
    note = "  // %s" % note if note else ""
    return "%s %s %s = %d%s;%s" % (_LABELS[f.label], kind, f.name, f.number, tail, note)


def _enum(e: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    lines = [indent + "enum %s {" % e.name]
    lines += [indent + "  %s = %d;" % (v.name, v.number) for v in e.value]
    return lines + [indent + "}"]


def _message(m: descriptor_pb2.DescriptorProto, indent: str = "",
             notes: dict[str, str] | None = None, prefix: str = "caffe") -> list[str]:
    notes = notes or {}
    full = "%s.%s" % (prefix, m.name)
    lines = [indent + "message %s {" % m.name]
    for e in m.enum_type:
        lines += _enum(e, indent + "  ")
    for n in m.nested_type:
        lines += _message(n, indent + "  ", notes, full)
    lines += [indent + "  " + _field(f, notes.get("%s.%s" % (full, f.name), ""))
              for f in m.field]
    return lines + [indent + "}"]


def to_proto_text(fdp: descriptor_pb2.FileDescriptorProto,
                  forks: dict[str, tuple[str, int]] | None = None) -> str:
    forks = forks or {}
    notes = {name: "%s%s" % (fork, "" if number is None else ", where it is %d" % number)
             for name, (fork, number) in forks.items()}
    lines = [
        "// Caffe's schema, written out from the descriptor of BVLC Caffe 1.0's",
        "// caffe_pb2 by tools/regen_proto.py, with the fork fields of dialects.proto",
        "// merged in (each marked with its fork).  Do not edit: regenerate.",
        'syntax = "proto2";', "", "package caffe;", "",
    ]
    for e in fdp.enum_type:
        lines += _enum(e, "") + [""]
    for m in fdp.message_type:
        lines += _message(m, "", notes) + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- dialects

DIALECT_PACKAGE = ".caffe_fx.dialect."
_OWN_RANGE = {"LayerParameter": 1000000}  # caffe_fx's numbers for renumbered fields
_OWN_RANGE_DEFAULT = 1000


def _compile_dialects(tmp: Path) -> tuple[descriptor_pb2.FileDescriptorProto, Any]:
    """dialects.proto's descriptor, its (fork)/(fork_number) options readable."""
    from grpc_tools import protoc  # developer dependency only
    import importlib.util

    include = Path(protoc.__file__).parent / "_proto"
    args = ["protoc", "-I%s" % PROTO_DIR, "-I%s" % include, "--python_out=%s" % tmp,
            "--descriptor_set_out=%s" % (tmp / "d.pb"), str(PROTO_DIR / "dialects.proto")]
    if protoc.main(args):
        sys.exit("protoc failed on dialects.proto")
    spec = importlib.util.spec_from_file_location("dialects_pb2", tmp / "dialects_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers the options' extensions
    fds = descriptor_pb2.FileDescriptorSet.FromString((tmp / "d.pb").read_bytes())
    return fds.file[-1], module


def merge_dialects(bvlc: descriptor_pb2.FileDescriptorProto
                   ) -> tuple[descriptor_pb2.FileDescriptorProto, dict[str, tuple[str, int]]]:
    """BVLC's schema with dialects.proto merged in; {full field name: (fork, its number
    there or None when kept)} for every field added to one of Caffe's messages."""
    import tempfile

    merged = descriptor_pb2.FileDescriptorProto()
    merged.CopyFrom(bvlc)
    by_name = {m.name: m for m in merged.message_type}
    forks: dict[str, tuple[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dialect, module = _compile_dialects(Path(tmp))

    def retype(f: descriptor_pb2.FieldDescriptorProto) -> None:
        f.options.ClearExtension(module.fork)
        f.options.ClearExtension(module.fork_number)
        if not f.options.ListFields():
            f.ClearField("options")
        if f.type_name.startswith(DIALECT_PACKAGE):
            f.type_name = ".caffe." + f.type_name[len(DIALECT_PACKAGE):]

    for m in dialect.message_type:
        target = by_name.get(m.name)
        if target is None:  # a fork's own message, with the messages nested in it
            new = merged.message_type.add()
            new.CopyFrom(m)
            stack = [new]
            while stack:
                message = stack.pop()
                for f in message.field:
                    retype(f)
                stack.extend(message.nested_type)
            by_name[m.name] = new
            continue
        for f in m.field:
            fork = f.options.Extensions[module.fork]
            if not fork:
                sys.exit("dialects.proto: %s.%s says no (fork)" % (m.name, f.name))
            if any(g.name == f.name for g in target.field):
                sys.exit("dialects.proto: %s.%s is already a field of %s; a name two "
                         "schemas give two meanings is not merged" % (m.name, f.name, m.name))
            used = {g.number for g in target.field}
            number = f.number
            fork_number = f.options.Extensions[module.fork_number] or None
            if number in used:
                start = _OWN_RANGE.get(m.name, _OWN_RANGE_DEFAULT)
                fork_number, number = number, next(n for n in range(start, start + 10**6)
                                                   if n not in used)
            g = target.field.add()
            g.CopyFrom(f)
            g.number = number
            retype(g)
            forks["caffe.%s.%s" % (m.name, f.name)] = (fork, fork_number)
    return merged, forks


def write_dialect_fields(forks: dict[str, tuple[str, int]]) -> None:
    lines = [
        '"""Every field caffe.proto has from a Caffe fork (dialects.proto): {full name: (fork,',
        "its number in that fork where caffe_fx numbers it otherwise, else None)}.",
        "",
        'Generated by tools/regen_proto.py: do not edit."""',
        "from __future__ import annotations",
        "",
        "FORK_FIELDS: dict[str, tuple[str, int | None]] = {",
    ]
    lines += ["    %r: (%r, %r)," % (name, fork, number) for name, (fork, number) in forks.items()]
    lines += ["}", ""]
    (PROTO_DIR / "dialect_fields.py").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--caffe-root", default="/opt/caffe-ref")
    a = ap.parse_args()
    serialized = subprocess.check_output([
        "chroot", a.caffe_root, "python3", "-c",
        "import sys, caffe.proto.caffe_pb2 as p; sys.stdout.buffer.write(p.DESCRIPTOR.serialized_pb)",
    ])
    fdp = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    merged, forks = merge_dialects(fdp)
    PROTO_DIR.mkdir(parents=True, exist_ok=True)
    (PROTO_DIR / "caffe.proto").write_text(to_proto_text(merged, forks))
    write_dialect_fields(forks)
    from grpc_tools import protoc  # developer dependency only

    rc = protoc.main(["protoc", "-I%s" % PROTO_DIR, "--python_out=%s" % PROTO_DIR, "--pyi_out=%s" % PROTO_DIR,
                      str(PROTO_DIR / "caffe.proto")])
    if rc:
        sys.exit(rc)
    _make_portable(PROTO_DIR / "caffe_pb2.py")


def _make_portable(path: Path) -> None:
    """Drops protoc's runtime-version pin (any protobuf >= 3.20 reads the
    descriptor) and registers the schema in a private pool, so that a user's own
    caffe_pb2 (real pycaffe, a fork) can be imported beside ours without clashing."""
    text = path.read_text()
    text = re.sub(r"from google\.protobuf import runtime_version as _runtime_version\n", "", text)
    text = re.sub(r"_runtime_version\.ValidateProtobufRuntimeVersion\([^)]*\)\n", "", text)
    text = text.replace("_descriptor_pool.Default().AddSerializedFile(",
                        "_POOL.AddSerializedFile(")
    text = text.replace("_sym_db = _symbol_database.Default()",
                        "_sym_db = _symbol_database.Default()\n_POOL = _descriptor_pool.DescriptorPool()")
    path.write_text(text)


if __name__ == "__main__":
    main()
