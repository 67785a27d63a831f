#!/usr/bin/env python3
"""A gRPC C-core server (grpcio) with the library's default settings, for the tests.

It serves what the NIO demo server serves, on raw bytes, so that the same client code runs
against both stacks:

- ``bench.Echo``: ``Unary`` returns the request, ``ServerStream`` returns it ``echo-repeat``
  times, ``ClientStream`` returns every request message concatenated, ``Stream`` returns each
  message as it arrives (after ``echo-greeting``'s value, when set, sent before any is read;
  ending with OK after ``echo-limit`` messages, when set, with the request still open; a
  ``Stream`` cancelled before its handler ends prints ``CANCELLED bench.Echo/Stream``).
  Request metadata ``echo-delay-ms`` delays the answer; ``echo-keys`` (comma-separated metadata
  keys) sends those keys' request values back in the initial metadata as ``echoed-<key>``;
  ``echo-status`` / ``echo-message`` fail the call with that code and message.
- ``grpc.health.v1.Health/Check``: SERVING for every service name.
- ``grpc.testing.TestService``: ``EmptyCall`` and ``UnaryCall`` (a payload of zeros of
  ``response_size``, the interop cases' ``response_status`` honoured), on messages generated at
  start from ``Protos/grpc/testing`` with grpcio-tools (installed beside grpcio). The soak
  cases (``rpc_soak``, ``channel_soak``) run against it.

No server option is set: the ping policy, the stream limits and the keepalive are the core's
defaults (gRFC A8: pings without data at most every 5 minutes, two strikes), as on most
production servers.

Usage: ``core_server.py [--port P]`` prints ``PORT <n>`` on its first line once it listens
and serves until it is killed or its standard input closes.
"""

import argparse
import os
import signal
import sys
import threading
import time

import grpc

SERVING = b"\x08\x01"  # grpc.health.v1.HealthCheckResponse{status: SERVING}


def _controls(context):
    """The per-call controls from the request metadata."""
    md = dict(context.invocation_metadata())
    keys = md.get("echo-keys")
    if keys:
        context.send_initial_metadata([("echoed-" + key, md.get(key, "")) for key in keys.split(",")])
    delay = int(md.get("echo-delay-ms", "0")) / 1000.0
    if delay > 0:
        # Wake early when the client cancels.
        done = threading.Event()
        context.add_callback(done.set)
        done.wait(delay)
    status = md.get("echo-status")
    if status is not None:
        context.abort(grpc.StatusCode(_code(int(status))), md.get("echo-message", ""))
    return md


def _code(number):
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return code.value
    return grpc.StatusCode.UNKNOWN.value


def unary(request, context):
    _controls(context)
    return request


def server_stream(request, context):
    md = _controls(context)
    for _ in range(int(md.get("echo-repeat", "1"))):
        yield request


def client_stream(requests, context):
    _controls(context)
    return b"".join(requests)


def stream(requests, context):
    md = _controls(context)
    # A stream that ends before its handler does was cancelled (by the client, or its deadline):
    # the RPC's end callback says so, the test reads this line. Not the request iterator's
    # error: grpcio stops pulling responses from a cancelled stream, so a handler suspended at
    # its yield never sees one.
    finished = threading.Event()

    def ended():
        if not finished.is_set():
            print("CANCELLED bench.Echo/Stream", flush=True)

    context.add_callback(ended)
    greeting = md.get("echo-greeting")
    if greeting is not None:
        # The server speaks first: a client may wait for it before it writes.
        yield greeting.encode()
    limit = int(md.get("echo-limit", "0"))
    for count, request in enumerate(requests, start=1):
        yield request
        if count == limit:
            # The server ends the RPC while the client's request is still open.
            finished.set()
            return
    finished.set()


def health_check(request, context):
    return SERVING


def testing_messages():
    """grpc.testing's messages, generated now from the repository's protos by grpcio-tools."""
    import importlib.util
    import tempfile

    from grpc_tools import protoc

    protos = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Protos")
    out = tempfile.mkdtemp(prefix="grpc-testing-")
    files = ["grpc/testing/empty.proto", "grpc/testing/messages.proto"]
    if protoc.main(["protoc", f"-I{protos}", f"--python_out={out}"] + files) != 0:
        raise RuntimeError("grpcio-tools could not generate grpc.testing's messages")
    def load(name):
        # By path: the package name grpc.testing is grpcio's own.
        spec = importlib.util.spec_from_file_location(f"grpc_testing_{name}", os.path.join(out, "grpc", "testing", f"{name}.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load("empty_pb2"), load("messages_pb2")


def testing_service():
    """grpc.testing.TestService's EmptyCall and UnaryCall."""
    empty_pb2, messages_pb2 = testing_messages()

    def empty_call(request, context):
        return empty_pb2.Empty()

    def unary_call(request, context):
        if request.HasField("response_status") and request.response_status.code != 0:
            context.abort(grpc.StatusCode(_code(request.response_status.code)), request.response_status.message)
        return messages_pb2.SimpleResponse(payload=messages_pb2.Payload(body=bytes(request.response_size)))

    return grpc.method_handlers_generic_handler(
        "grpc.testing.TestService",
        {
            "EmptyCall": grpc.unary_unary_rpc_method_handler(
                empty_call,
                request_deserializer=empty_pb2.Empty.FromString,
                response_serializer=empty_pb2.Empty.SerializeToString,
            ),
            "UnaryCall": grpc.unary_unary_rpc_method_handler(
                unary_call,
                request_deserializer=messages_pb2.SimpleRequest.FromString,
                response_serializer=messages_pb2.SimpleResponse.SerializeToString,
            ),
        },
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    identity = dict(request_deserializer=None, response_serializer=None)
    echo = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, **identity),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream, **identity),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream, **identity),
            "Stream": grpc.stream_stream_rpc_method_handler(stream, **identity),
        },
    )
    health = grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(health_check, **identity)},
    )

    from concurrent import futures

    # grpcio runs each RPC's handler on a worker thread for the RPC's whole life: a stream held
    # open holds a thread. 256 serves more streams at once than one connection carries (100).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=256))
    server.add_generic_rpc_handlers((echo, health, testing_service()))
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    if port == 0:
        print(f"cannot listen on {args.host}:{args.port}", file=sys.stderr)
        sys.exit(1)
    server.start()
    print(f"PORT {port}", flush=True)

    # grpcio keeps SIGTERM from ending the process: end at once, as a crashed server would.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    # Serve until the parent closes our standard input (or kills us).
    def watch_stdin():
        sys.stdin.read()
        server.stop(grace=0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    server.wait_for_termination()
    time.sleep(0.05)


if __name__ == "__main__":
    main()
