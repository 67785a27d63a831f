#!/usr/bin/env python3
"""An OpenTelemetry trace receiver over OTLP/gRPC (grpcio, opentelemetry-proto), for the tests.

It serves ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` and prints every span it
receives as one JSON line: ``{"name", "kind", "trace_id", "span_id", "parent_span_id",
"service", "attributes": {key: value}, "status": code}``, the IDs in lowercase hex.

Usage: ``otlp_receiver.py [--port P]`` prints ``PORT <n>`` on its first line once it listens and
serves until it is killed or its standard input closes.
"""

import argparse
import json
import sys
import threading
from concurrent import futures

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

_lock = threading.Lock()


def _value(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    line = json.dumps(
                        {
                            "name": span.name,
                            "kind": trace_pb2.Span.SpanKind.Name(span.kind),
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "service": resource.get("service.name"),
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "status": span.status.code,
                        },
                        sort_keys=True,
                    )
                    with _lock:
                        print(line, flush=True)
        return trace_service_pb2.ExportTraceServiceResponse()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Receiver(), server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    print(f"PORT {port}", flush=True)
    # Serve until standard input closes (the test process is gone) or a signal ends it.
    sys.stdin.read()
    server.stop(0)


if __name__ == "__main__":
    main()
