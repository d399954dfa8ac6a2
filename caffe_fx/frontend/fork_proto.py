"""A user's own caffe.proto (a fork's) for reading prototxts of forks caffe_fx does not bundle.

Frontend helper.  The bundled schema has BVLC Caffe's fields and the fork fields of
dialects.proto; a net written for another fork needs that fork's schema to parse.  It is
compiled with grpcio-tools' bundled protoc, or a `protoc` on PATH, into a private
descriptor pool, and the parsed net is carried over to the bundled schema field by field,
by name (carry_by_name): never by wire number, since forks reuse BVLC's numbers for other
fields (ppengtang/caffe's roi_pooling_param is BVLC's swish_param, 147).  A field the
bundled schema lacks, or has with another type, is reported, all of them at once.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from google.protobuf import message as _message
from google.protobuf.descriptor import FieldDescriptor

from ..errors import ProtoError, ProtoParseError, spelled


def _named(proto_path: str) -> str:
    return spelled(f"caffe_proto={proto_path!r}", f"--caffe-proto {proto_path}")


@functools.lru_cache(maxsize=8)
def fork_net_parameter(proto_path: str) -> type:
    """The NetParameter class of the schema in `proto_path` (compiled once per path)."""
    path = Path(proto_path)
    if not path.is_file():
        raise ProtoError(f"{_named(proto_path)}: no such .proto file")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        args = [f"-I{path.parent}", f"--descriptor_set_out={out}", "--include_imports",
                path.name]
        _run_protoc(args, proto_path)
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    package = fds.file[-1].package
    full = f"{package}.NetParameter" if package else "NetParameter"
    try:
        desc = pool.FindMessageTypeByName(full)
    except KeyError as e:
        raise ProtoError(f"{_named(proto_path)}: defines no message {full}; "
                         "is it a caffe.proto?") from e
    return message_factory.GetMessageClass(desc)


def _run_protoc(args: list[str], proto_path: str) -> None:
    try:
        from grpc_tools import protoc  # type: ignore[import-not-found]
    except ImportError:
        protoc = None
    if protoc is not None:
        rc = protoc.main(["protoc", *args])
        if rc != 0:
            raise ProtoError(f"{_named(proto_path)}: protoc (grpcio-tools) failed "
                             f"with exit code {rc}; see its messages above")
        return
    exe = shutil.which("protoc")
    if exe is None:
        raise ProtoError(
            f"{_named(proto_path)}: compiling a fork's caffe.proto needs protoc; "
            "install it with `pip install grpcio-tools` (or put `protoc` on PATH)")
    proc = subprocess.run([exe, *args], capture_output=True, text=True,
                          env={**os.environ})
    if proc.returncode != 0:
        raise ProtoError(f"{_named(proto_path)}: protoc failed: {proc.stderr.strip()}")


def carry_by_name(src: _message.Message, dst: _message.Message, where: str,
                  proto_path: str) -> None:
    """Copies every field set in `src` (a fork schema's message) into `dst` (the bundled
    schema's message of the same role), by field and enum value names; ProtoParseError
    listing every field or value with no counterpart of the same kind."""
    problems: list[str] = []
    _carry(src, dst, dst.DESCRIPTOR.name, problems)
    if problems:
        raise ProtoParseError(
            f"{where}: parsed with caffe_proto={proto_path!r}, {len(problems)} field(s) "
            "have no counterpart in caffe_fx's schema (Caffe's and the forks of "
            "caffe_fx/proto/dialects.proto), so no layer could read them:\n"
            + "\n".join(f"  {p}" for p in problems))


def _carry(src: _message.Message, dst: _message.Message, path: str,
           problems: list[str]) -> None:
    fields = dst.DESCRIPTOR.fields_by_name
    for fd, value in src.ListFields():
        here = f"{path}.{fd.name}"
        target = fields.get(fd.name)
        if target is None:
            problems.append(f"{here}: caffe_fx knows no such field")
            continue
        if _kind(fd) != _kind(target) or fd.is_repeated != target.is_repeated:
            problems.append(f"{here}: the fork's {_describe(fd)} is caffe_fx's "
                            f"{_describe(target)} of the same name; refused, not re-typed")
            continue
        values = value if fd.is_repeated else [value]
        for i, v in enumerate(values):
            at = f"{here}[{i}]" if fd.is_repeated else here
            if fd.name in ("layer", "layers") and getattr(v, "name", ""):
                at = f"layer '{v.name}'"  # how a user finds it in the prototxt
            if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                sub = getattr(dst, fd.name).add() if fd.is_repeated else getattr(dst, fd.name)
                sub.SetInParent()
                _carry(v, sub, at, problems)
                continue
            if fd.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
                name = fd.enum_type.values_by_number[v].name
                known = target.enum_type.values_by_name.get(name)
                if known is None:
                    problems.append(f"{at} = {name}: caffe_fx knows no such value (allowed: "
                                    f"{', '.join(target.enum_type.values_by_name)})")
                    continue
                v = known.number
            if fd.is_repeated:
                getattr(dst, fd.name).append(v)
            else:
                setattr(dst, fd.name, v)


def _kind(fd: FieldDescriptor) -> object:
    if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        return ("message", fd.message_type.name)
    if fd.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        return ("enum", fd.enum_type.name)
    return fd.cpp_type


def _describe(fd: FieldDescriptor) -> str:
    if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        return f"message {fd.message_type.name}"
    if fd.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        return f"enum {fd.enum_type.name}"
    return {FieldDescriptor.CPPTYPE_BOOL: "bool", FieldDescriptor.CPPTYPE_STRING: "string",
            FieldDescriptor.CPPTYPE_FLOAT: "float", FieldDescriptor.CPPTYPE_DOUBLE: "double",
            FieldDescriptor.CPPTYPE_INT32: "int32", FieldDescriptor.CPPTYPE_INT64: "int64",
            FieldDescriptor.CPPTYPE_UINT32: "uint32", FieldDescriptor.CPPTYPE_UINT64: "uint64",
            }.get(fd.cpp_type, "field")
