#!/usr/bin/env python3
"""Writes gRPC's channelz API (grpc.channelz.v1) as a FileDescriptorSet, for protoc's
``--descriptor_set_in``.

The API's schema comes from PyPI's grpcio-channelz, whose ``channelz_pb2`` carries it as a
serialized descriptor (the package ships no ``.proto``); the well-known types it imports come
with it. Called by ``Protos/generate.sh`` with the venv's Python: ``descriptor.py OUT``.
"""

import sys

from google.protobuf import descriptor_pb2
from grpc_channelz.v1 import channelz_pb2


def main():
    files = descriptor_pb2.FileDescriptorSet()
    seen = set()

    def add(descriptor):
        if descriptor.name in seen:
            return
        for dependency in descriptor.dependencies:
            add(dependency)
        seen.add(descriptor.name)
        proto = descriptor_pb2.FileDescriptorProto()
        descriptor.CopyToProto(proto)
        files.file.append(proto)

    add(channelz_pb2.DESCRIPTOR)
    with open(sys.argv[1], "wb") as out:
        out.write(files.SerializeToString())


if __name__ == "__main__":
    main()
