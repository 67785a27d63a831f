#!/usr/bin/env bash
# Generates the committed Swift code from the protos. Called by `make generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_SWIFT=$(realpath "$1")
PROTOC_GEN_GRPC_SWIFT=$(realpath "$2")
PYTHON=${3:-.build-venv/bin/python}

# generate OUT_DIR VISIBILITY CLIENT SERVER PROTO...
generate() {
    local out=$1 visibility=$2 client=$3 server=$4
    shift 4
    mkdir -p "$out"
    protoc --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" -I Protos \
        --swift_out="$out" --swift_opt=Visibility="$visibility",UseAccessLevelOnImports=true "$@"
    protoc --plugin=protoc-gen-grpc-swift-2="$PROTOC_GEN_GRPC_SWIFT" -I Protos \
        --grpc-swift-2_out="$out" \
        --grpc-swift-2_opt=Visibility="$visibility",Client="$client",Server="$server",UseAccessLevelOnImports=true "$@"
}

# The demo servers: health (server and client, public so tests and tools can call it).
generate Sources/DemoServices/Generated Public true true grpc/health/v1/health.proto
# The interop test protos and the demo services (stubs for clients and servers).
generate Sources/DemoServices/Generated Public true true grpc/testing/empty.proto grpc/testing/messages.proto grpc/testing/test.proto
generate Sources/DemoServices/Generated Public true true demo/services.proto

# The pool's own health checks: messages only, internal to the library.
mkdir -p Sources/GRPCPool/Generated
protoc --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" -I Protos \
    --swift_out=Sources/GRPCPool/Generated --swift_opt=Visibility=Internal,UseAccessLevelOnImports=true \
    grpc/health/v1/health.proto

# The etcd v3 API (KV and Watch clients for etcd discovery): internal to the library.
generate Sources/GRPCPool/Generated Internal true false etcd/kv.proto etcd/auth.proto etcd/rpc.proto

# gRPC's channelz API (grpc.channelz.v1): the pool serves it from the C core's data. Its schema
# is the descriptor PyPI's grpcio-channelz carries (Protos/channelz/descriptor.py).
channelz=$(mktemp)
trap 'rm -f "$channelz"' EXIT
"$PYTHON" Protos/channelz/descriptor.py "$channelz"
out=Sources/GRPCPool/Generated/channelz
mkdir -p "$out"
protoc --plugin=protoc-gen-swift="$PROTOC_GEN_SWIFT" --descriptor_set_in="$channelz" \
    --swift_out="$out" --swift_opt=Visibility=Public,UseAccessLevelOnImports=true grpc_channelz/v1/channelz.proto
protoc --plugin=protoc-gen-grpc-swift-2="$PROTOC_GEN_GRPC_SWIFT" --descriptor_set_in="$channelz" \
    --grpc-swift-2_out="$out" \
    --grpc-swift-2_opt=Visibility=Public,Client=true,Server=true,UseAccessLevelOnImports=true \
    grpc_channelz/v1/channelz.proto
