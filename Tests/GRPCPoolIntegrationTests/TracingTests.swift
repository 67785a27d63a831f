import DemoServices
import GRPCCore
import GRPCPool
import InMemoryTracing
import Testing
import Tracing

/// Traces across the call: each attempt through the pool is a client span with OpenTelemetry's
/// RPC attributes and the pool's, and its context reaches the server in `traceparent`.
@Suite("Traces across the call")
struct TracingTests {
    static let unary = MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Unary", type: .unary)
    static let stream = MethodDescriptor(
        fullyQualifiedService: "bench.Echo",
        method: "Stream",
        type: .bidirectionalStreaming
    )

    /// What one traced call saw: the caller's span, and the client spans of its attempts.
    struct Seen {
        var parent: InMemorySpanContext
        var refusedAttempts: [FinishedInMemorySpan]
        var unary: (span: FinishedInMemorySpan, received: String)
        var stream: (span: FinishedInMemorySpan, received: String)
    }

    @Test(
        "Each attempt is a client span with OpenTelemetry's RPC attributes and the pool's, and the server receives its traceparent",
        arguments: Stack.allCases
    )
    func attemptSpans(_ stack: Stack) async throws {
        let tracer = W3CInMemoryTracer()
        try await withTracedBackend(stack, tracer: tracer) { server in
            let port = try #require(server.target.split(separator: ":").last.flatMap { Int($0) })
            let config = testConfig([server.target], poolSize: 2) { $0.outlierDetection = nil }
            let seen = try await withPoolManager(["echo": config]) { manager in
                try await Self.tracedCalls(manager.client(for: "echo"), tracer: tracer)
            }
            let maxAttempts = config.retryPolicy.maxAttempts
            // Retries on and a deadline set: a refused call is one span per attempt, 1, 2, 3.
            #expect(seen.refusedAttempts.count == maxAttempts)
            #expect(seen.refusedAttempts.map { Self.int($0, "grpc.pool.attempt") } == Array(1...maxAttempts))
            for span in seen.refusedAttempts {
                #expect(Self.int(span, "rpc.grpc.status_code") == 14)
                #expect(span.status?.code == .error)
            }
            for span in seen.refusedAttempts + [seen.unary.span, seen.stream.span] {
                #expect(span.kind == .client)
                #expect(span.traceID == seen.parent.traceID)
                #expect(span.parentSpanID == seen.parent.spanID)
                #expect(Self.string(span, "rpc.system") == "grpc")
                #expect(Self.string(span, "rpc.service") == "bench.Echo")
                #expect(Self.string(span, "server.address") == "127.0.0.1")
                #expect(Self.int(span, "server.port") == port)
                #expect(Self.string(span, "grpc.pool.service") == "echo")
                #expect((0..<2).contains(Self.int(span, "grpc.pool.connection") ?? -1))
                #expect(Self.double(span, "grpc.pool.delay_ms") != nil)
            }
            #expect(seen.unary.span.operationName == "bench.Echo/Unary")
            #expect(Self.string(seen.unary.span, "rpc.method") == "Unary")
            #expect(Self.int(seen.unary.span, "rpc.grpc.status_code") == 0)
            #expect(Self.int(seen.unary.span, "grpc.pool.attempt") == 1)
            #expect(seen.unary.span.status == nil)
            #expect(seen.stream.span.operationName == "bench.Echo/Stream")
            #expect(Self.int(seen.stream.span, "rpc.grpc.status_code") == 0)
            // What the server received is the attempt's own context.
            #expect(seen.unary.received == W3CInMemoryTracer.traceparent(seen.unary.span.spanContext))
            #expect(seen.stream.received == W3CInMemoryTracer.traceparent(seen.stream.span.spanContext))

            guard stack == .nio else { return }
            // The NIO server's tracing interceptor made each attempt's server span its child.
            let clientSpans = seen.refusedAttempts + [seen.unary.span, seen.stream.span]
            let joined = await poll(timeLimit: .seconds(10)) {
                let servers = tracer.finishedSpans.filter { $0.kind == .server }
                return clientSpans.allSatisfy { client in
                    servers.count { $0.parentSpanID == client.spanID && $0.traceID == client.traceID } == 1
                }
            }
            #expect(joined, "\(tracer.finishedSpans.map { ($0.operationName, $0.kind, $0.parentSpanID) })")
        }
    }

    @Test("With no tracer, no traceparent goes out", arguments: Stack.allCases)
    func noTracer(_ stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 1)]) { manager in
                let client = try manager.client(for: "echo")
                let echoed = try await client.echoMetadata(["echo-keys": "traceparent"], timeout: .seconds(10))
                #expect(echoed[stringValues: "echoed-traceparent"].first { _ in true } == "")
            }
        }
    }

    /// Inside a span of the caller's: a call every attempt of which is refused, a unary call,
    /// and a bidirectional stream.
    private static func tracedCalls(
        _ client: GRPCClient<PooledTransport>,
        tracer: W3CInMemoryTracer
    ) async throws
        -> Seen
    {
        try await withTracer(tracer) {
            try await tracer.withSpan("caller") { caller in
                let refused = await #expect(throws: RPCError.self) {
                    try await client.echoMetadata(
                        ["echo-status": "14", "echo-message": "refused"],
                        timeout: .seconds(10)
                    )
                }
                #expect(refused?.code == .unavailable)
                let refusedSpans = tracer.finishedSpans.filter { $0.kind == .client }
                let unary = try await client.echoMetadata(["echo-keys": "traceparent"], timeout: .seconds(10))
                let unarySpan = try #require(tracer.finishedSpans.filter { $0.kind == .client }.last)
                let stream = try await client.streamMetadata(["echo-keys": "traceparent"], timeout: .seconds(10))
                let streamSpan = try #require(tracer.finishedSpans.filter { $0.kind == .client }.last)
                return Seen(
                    parent: caller.spanContext,
                    refusedAttempts: refusedSpans,
                    unary: (unarySpan, unary[stringValues: "echoed-traceparent"].first { _ in true } ?? ""),
                    stream: (streamSpan, stream[stringValues: "echoed-traceparent"].first { _ in true } ?? "")
                )
            }
        }
    }

    static func string(_ span: FinishedInMemorySpan, _ key: String) -> String? {
        guard case .string(let value) = span.attributes[key]?.toSpanAttribute() else { return nil }
        return value
    }

    static func int(_ span: FinishedInMemorySpan, _ key: String) -> Int? {
        guard case .int64(let value) = span.attributes[key]?.toSpanAttribute() else { return nil }
        return Int(value)
    }

    static func double(_ span: FinishedInMemorySpan, _ key: String) -> Double? {
        guard case .double(let value) = span.attributes[key]?.toSpanAttribute() else { return nil }
        return value
    }
}

/// Runs `body` with a started server of `stack`; the NIO server's RPCs are server spans of
/// `tracer` (the C-core server traces nothing).
func withTracedBackend<Result>(
    _ stack: Stack,
    tracer: any Tracer,
    _ body: (any Backend) async throws -> Result
) async throws -> Result {
    switch stack {
    case .nio: try await withDemoServer(tracer: tracer) { try await body($0) }
    case .core: try await withCoreServer { try await body($0) }
    }
}

extension GRPCClient {
    /// `bench.Echo/Unary` with `metadata` and a deadline: the response's initial metadata.
    func echoMetadata(_ metadata: Metadata, timeout: Duration) async throws -> Metadata {
        var options = CallOptions.defaults
        options.timeout = timeout
        return try await self.unary(
            request: ClientRequest(message: [1, 2, 3], metadata: metadata),
            descriptor: TracingTests.unary,
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: options
        ) { response in
            _ = try response.message
            return response.metadata
        }
    }

    /// `bench.Echo/Stream` with `metadata` and a deadline, two messages each way: the
    /// response's initial metadata.
    func streamMetadata(_ metadata: Metadata, timeout: Duration) async throws -> Metadata {
        var options = CallOptions.defaults
        options.timeout = timeout
        return try await self.bidirectionalStreaming(
            request: StreamingClientRequest(of: [UInt8].self, metadata: metadata) { writer in
                try await writer.write([1])
                try await writer.write([2])
            },
            descriptor: TracingTests.stream,
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: options
        ) { response in
            var count = 0
            for try await _ in response.messages { count += 1 }
            guard count == 2 else { throw RPCError(code: .dataLoss, message: "\(count) of 2 echoes") }
            return response.metadata
        }
    }
}
