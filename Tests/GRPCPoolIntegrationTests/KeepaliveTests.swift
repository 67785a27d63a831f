import DemoServices
import GRPCCore
import GRPCPool
import Testing

@Suite("Keepalive against servers with default ping policies")
struct KeepaliveTests {
    /// A C-core server with its defaults allows a ping without data every 5 minutes, with two
    /// strikes (gRFC A8); the pool's defaults ping every 10 s. With pings alone, the server answers
    /// the fourth with GOAWAY `too_many_pings` (about 40 s into a quiet stream) and the stream fails.
    /// The pool's keepalive RPC, answered every 10 s, clears the strikes before that.
    @Test("A bidirectional stream idle for 70 s on a default pool still echoes", arguments: Stack.allCases)
    func idleStreamSurvives(_ stack: Stack) async throws {
        try await withBackend(stack) { server in
            let endpoint = try #require(PoolManager.Endpoint(parsing: server.target))
            let config = PoolManager.ServiceConfig(host: endpoint.host, port: endpoint.port)
            #expect(config.keepaliveTime == .seconds(10))
            try await withPoolManager(["echo": config]) { manager in
                let client = try manager.client(for: "echo")
                let (requests, send) = AsyncStream.makeStream(of: [UInt8].self)
                send.yield([1])
                let replies = try await client.bidirectionalStreaming(
                    request: StreamingClientRequest(of: [UInt8].self) { writer in
                        for await message in requests { try await writer.write(message) }
                    },
                    descriptor: MethodDescriptor(
                        fullyQualifiedService: "bench.Echo",
                        method: "Stream",
                        type: .bidirectionalStreaming
                    ),
                    serializer: RawBytesSerializer(),
                    deserializer: RawBytesDeserializer(),
                    options: .defaults
                ) { response in
                    // However the stream ends, the request side ends with it (a failed stream must
                    // fail the test, not leave the writer waiting).
                    defer { send.finish() }
                    var received: [[UInt8]] = []
                    for try await message in response.messages {
                        received.append(message)
                        if received.count == 1 {
                            // Quiet for 70 s: no message either way, only keepalive.
                            try await Task.sleep(for: .seconds(70))
                            send.yield([2])
                        } else {
                            send.finish()
                        }
                    }
                    return received
                }
                #expect(replies == [[1], [2]])
            }
        }
    }

    /// A grpc-swift (NIO) server with its default configuration enforces 100 streams per
    /// connection without announcing a limit, and closes the connection with PROTOCOL_ERROR when
    /// a 101st arrives, failing every call on it. The pool keeps one stream of `streamCapacity`
    /// (default 100) for its own RPC, so 99 calls plus the keepalive RPC fit; the 100th call
    /// waits for room. The pool's timers are on a ``ManualClock``: the keepalive RPC goes out when
    /// the test moves it, while the calls are all open.
    @Test("A connection full of calls to a default grpc-swift server survives the pool's keepalive RPC")
    func fullConnectionKeepalive() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 1) { $0.timeout = .seconds(150) }
            #expect(config.streamCapacity == 100)
            let clock = ManualClock()
            try await withPoolManager(["echo": config], clock: clock) { manager in
                let pool = try manager.pool(for: "echo")
                let held = HeldCalls(pool: pool)
                defer { held.cancel() }
                held.start(100)
                try #require(await poll { pool.metrics().inFlight == 99 && pool.waitingCalls == 1 })

                let checksBefore = server.health.checks
                try #require(await clock.advanceToSleep(in: config.keepaliveTime))
                #expect(await poll { server.health.checks > checksBefore }, "the keepalive RPC was answered")
                let metrics = pool.metrics()
                #expect(metrics.inFlight == 99, "the calls are still open")
                #expect(metrics.reconnects == 0 && metrics.healthyConnections == 1, "\(metrics)")

                let ended = await held.cancelAll()
                #expect(ended.allSatisfy { $0 == .cancelled }, "\(ended)")
            }
        }
    }
}
