"""A user's own caffe.proto (a fork's: SSD, Fast R-CNN, ...) for reading its prototxts.

Frontend helper.  Fork prototxts set fields the bundled BVLC schema lacks, so text
parsing needs the fork's schema.  It is compiled with grpcio-tools' bundled protoc, or a
`protoc` on PATH, into a private descriptor pool; parsed nets are then carried over to
the bundled schema by their wire bytes (fields unknown to BVLC are kept as unknown
fields; the layers that use them are reported as unsupported by the builder).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from ..errors import ProtoError


@functools.lru_cache(maxsize=8)
def fork_net_parameter(proto_path: str) -> type:
    """The NetParameter class of the schema in `proto_path` (compiled once per path)."""
    path = Path(proto_path)
    if not path.is_file():
        raise ProtoError(f"caffe_proto={proto_path!r}: no such .proto file")
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
        raise ProtoError(f"caffe_proto={proto_path!r}: defines no message {full}; "
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
            raise ProtoError(f"caffe_proto={proto_path!r}: protoc (grpcio-tools) failed "
                             f"with exit code {rc}; see its messages above")
        return
    exe = shutil.which("protoc")
    if exe is None:
        raise ProtoError(
            f"caffe_proto={proto_path!r}: compiling a fork's caffe.proto needs protoc; "
            "install it with `pip install grpcio-tools` (or put `protoc` on PATH)")
    proc = subprocess.run([exe, *args], capture_output=True, text=True,
                          env={**os.environ})
    if proc.returncode != 0:
        raise ProtoError(f"caffe_proto={proto_path!r}: protoc failed: {proc.stderr.strip()}")
