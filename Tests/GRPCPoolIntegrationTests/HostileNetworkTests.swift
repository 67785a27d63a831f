import DemoServices
import GRPCCore
import GRPCPool
import Testing

/// Runs `callers` loops of unary calls through the pool's `GRPCClient` (a stub's path, with the
/// configured retries) until `stop` is set, each pausing `pause` between calls.
func steadyClientLoad(
    _ manager: PoolManager,
    callers: Int,
    pause: Duration = .zero,
    counter: LoadCounter,
    stop: StopFlag
) async throws {
    let client = try manager.client(for: "echo")
    await runLoad(callers: callers, pause: pause, counter: counter, stop: stop) { caller in
        let payload = [UInt8](repeating: UInt8(caller), count: 32)
        return try await client.echo(payload) == payload
    }
}

/// Starts `server`, runs `body`, and stops the server whatever happens.
func withStarted<Result>(_ server: DemoServer, _ body: () async throws -> Result) async throws -> Result {
    try await server.start()
    do {
        let result = try await body()
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

@Suite("Hostile network")
struct HostileNetworkTests {
    @Test("Oversized messages fail with RESOURCE_EXHAUSTED and the connection stays usable")
    func oversizedMessages() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 1) { config in
                config.maxSendMessageSize = 4096
                config.maxReceiveMessageSize = 1024
                config.enableRetries = false
            }
            try await withPoolManager(["echo": config]) { manager in
                let client = try manager.client(for: "echo")
                let pool = try manager.pool(for: "echo")
                func echo(_ payload: [UInt8]) async throws -> [UInt8] { try await client.echo(payload) }
                // Too big to send.
                let sent = await #expect(throws: RPCError.self) { try await echo([UInt8](repeating: 1, count: 8192)) }
                #expect(sent?.code == .resourceExhausted, "\(String(describing: sent))")
                // Small enough to send, too big to receive back.
                let received = await #expect(throws: RPCError.self) {
                    try await echo([UInt8](repeating: 2, count: 2048))
                }
                #expect(received?.code == .resourceExhausted, "\(String(describing: received))")
                // The connection is still healthy and serves the next call.
                #expect(pool.connections[0].isHealthy)
                #expect(pool.connections[0].metrics().reconnects == 0)
                #expect(try await echo([3, 4, 5]) == [3, 4, 5])
            }
        }
    }
}

extension Duration {
    var milliseconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}

extension IsolatedTests {
    /// GOAWAY every 0.4 s under load: whether every call survives the reconnections depends on
    /// how fast they happen, which 80 tests in parallel on two cores can stretch. Run alone.
    ///
    /// Seen about once in ten runs beside the parallel tests: the NIO server stops answering on a
    /// connection it is closing (not even PINGs), so the calls on it end with UNAVAILABLE
    /// "keepalive watchdog timeout" after keepaliveTime + keepaliveTimeout (15 s here) and are
    /// retried on the new connections: the run takes 15 s longer, no call fails. (The NIO
    /// transport's own comments name a race of a new stream with the server's GOAWAY,
    /// swift-nio-http2#466; not confirmed to be this.)
    @Suite("Hostile network: GOAWAY under load")
    struct GoAwayTests {
        @Test("A server that sends GOAWAY at its max connection age: the pool reconnects and no call fails")
        func maxConnectionAge() async throws {
            let server = DemoServer(connectionPolicy: .init(maxAge: .milliseconds(400), maxGraceTime: .seconds(5)))
            try await withStarted(server) {
                try await withPoolManager(["echo": testConfig([server.target], poolSize: 2)]) { manager in
                    let pool = try manager.pool(for: "echo")
                    let counter = LoadCounter()
                    let stop = StopFlag()
                    let load = Task { try await steadyClientLoad(manager, callers: 8, counter: counter, stop: stop) }
                    // Each connection is told to go away every 0.4 s: three generations of two.
                    #expect(
                        await poll(timeLimit: .seconds(15)) { server.peers.count >= 6 },
                        "peers: \(server.peers.count)"
                    )
                    let successes = counter.successes
                    #expect(await poll { counter.successes > successes + 100 }, "calls go on after the reconnections")
                    stop.set()
                    try await load.value
                    #expect(counter.failures.isEmpty, "failed calls: \(counter.failures)")
                    #expect(pool.metrics().reconnects >= 4)
                    #expect(await poll { pool.metrics().healthyConnections == 2 })
                }
            }
        }
    }
}

extension IsolatedTests {
    /// The keepalive RPC must reach the server about as often as the client pings. The RPC runs
    /// on Swift's cooperative pool, the C core's pings on the core's own threads: beside 80 tests
    /// in parallel on two cores, the server was seen to send GOAWAY `too_many_pings` in 3 of 6
    /// runs (never alone, nor beside three CPU hogs). Run alone.
    @Suite("Hostile network: a server stricter about pings than the client")
    struct PingPolicyTests {
        @Test(
            "Keepalive more frequent than the server allows: the keepalive RPC keeps the server content, no GOAWAY, no call fails"
        )
        func tooManyPings() async throws {
            // The server wants 3 s between pings without data, with two strikes; the client pings
            // every 2 s (the seed's 10 s against a 5-minute server policy, scaled down). Pings alone
            // draw GOAWAY `too_many_pings` at the fourth ping after the server last wrote, 8 s; the
            // pool's keepalive RPC every 2 s makes the server write, which clears its strikes, so it
            // never sends one. A GOAWAY would need the RPC late by about 4 s: in `make test` some 80
            // tests share two cores, and an RPC every 4 s (2 s to spare) drew one now and then.
            let server = DemoServer(connectionPolicy: .init(minPingInterval: .seconds(3)))
            try await withStarted(server) {
                let config = testConfig([server.target], poolSize: 1) { config in
                    config.keepaliveTime = .seconds(2)
                    config.keepaliveTimeout = .seconds(2)
                }
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    let counter = LoadCounter()
                    let stop = StopFlag()
                    // A call every 8 s: the connection is mostly idle, as pooled connections often are.
                    let load = Task {
                        try await steadyClientLoad(
                            manager,
                            callers: 1,
                            pause: .seconds(8),
                            counter: counter,
                            stop: stop
                        )
                    }
                    // An observation window, not a wait for a condition: ten keepalive periods, in
                    // which pings alone would have drawn two GOAWAYs (each a new connection).
                    try await Task.sleep(for: .seconds(20))
                    #expect(server.peers.count == 1, "the server sent GOAWAY: \(server.peers.count) connections")
                    #expect(pool.metrics().reconnects == 0)
                    #expect(await poll { pool.metrics().healthyConnections == 1 })
                    for _ in 0..<5 {
                        _ = try await pool.unary(method: echoUnary, request: [1])
                    }
                    stop.set()
                    load.cancel()
                    _ = try? await load.value
                    // Cancelling the load ends its pause (.unknown) or its call (.cancelled); nothing else.
                    #expect(
                        counter.failures.allSatisfy { $0 == .unknown || $0 == .cancelled },
                        "failed calls: \(counter.failures)"
                    )
                    #expect(counter.successes >= 1)
                }
            }
        }
    }
}
