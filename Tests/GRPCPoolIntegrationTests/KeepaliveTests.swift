import DemoServices
import GRPCCore
import GRPCPool
import Testing

@Suite("Keepalive against servers with default ping policies")
struct KeepaliveTests {
    /// A C-core server with its defaults allows a ping without data every 5 minutes, with two
    /// strikes (gRFC A8); the pool's defaults ping every 10 s. With pings alone, the server answers
    /// the fourth with GOAWAY `too_many_pings` (about 40 s into a quiet stream) and the stream fails.
    /// The pool's keepalive RPC, answered every 20 s, clears the strikes before that.
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
}
