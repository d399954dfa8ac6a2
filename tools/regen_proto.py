"""Regenerates caffe_fx/proto/caffe.proto and caffe_pb2.py from real Caffe.

The schema is taken from the descriptor compiled into the reference Caffe's own
caffe_pb2 (BVLC Caffe 1.0, installed by ../shared/caffe-oracle), written back out
as .proto text, then compiled with grpcio-tools' bundled protoc.  Developer tool
only: the package ships both outputs, so users never need protoc.

    python tools/regen_proto.py [--caffe-root /opt/caffe-ref]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

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


def _field(f: descriptor_pb2.FieldDescriptorProto) -> str:
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
    return "%s %s %s = %d%s;" % (_LABELS[f.label], kind, f.name, f.number, tail)


def _enum(e: descriptor_pb2.EnumDescriptorProto, indent: str) -> list[str]:
    lines = [indent + "enum %s {" % e.name]
    lines += [indent + "  %s = %d;" % (v.name, v.number) for v in e.value]
    return lines + [indent + "}"]


def _message(m: descriptor_pb2.DescriptorProto, indent: str = "") -> list[str]:
    lines = [indent + "message %s {" % m.name]
    for e in m.enum_type:
        lines += _enum(e, indent + "  ")
    for n in m.nested_type:
        lines += _message(n, indent + "  ")
    lines += [indent + "  " + _field(f) for f in m.field]
    return lines + [indent + "}"]


def to_proto_text(fdp: descriptor_pb2.FileDescriptorProto) -> str:
    lines = [
        "// Caffe's schema, written out from the descriptor of BVLC Caffe 1.0's",
        "// caffe_pb2 by tools/regen_proto.py.  Do not edit: regenerate.",
        'syntax = "proto2";', "", "package caffe;", "",
    ]
    for e in fdp.enum_type:
        lines += _enum(e, "") + [""]
    for m in fdp.message_type:
        lines += _message(m) + [""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--caffe-root", default="/opt/caffe-ref")
    a = ap.parse_args()
    serialized = subprocess.check_output([
        "chroot", a.caffe_root, "python3", "-c",
        "import sys, caffe.proto.caffe_pb2 as p; sys.stdout.buffer.write(p.DESCRIPTOR.serialized_pb)",
    ])
    fdp = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    PROTO_DIR.mkdir(parents=True, exist_ok=True)
    (PROTO_DIR / "caffe.proto").write_text(to_proto_text(fdp))
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
