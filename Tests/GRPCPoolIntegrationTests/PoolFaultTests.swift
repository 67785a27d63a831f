import DemoServices
import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge
import Synchronization
import Testing

@Suite("Connection pool under faults")
struct PoolFaultTests {
    @Test("Stopping one of two endpoints under load: the other serves, the lost one comes back")
    func stopOneEndpoint() async throws {
        try await withDemoServer { a in
            try await withDemoServer { b in
                let config = testConfig([a.target, b.target], poolSize: 4)
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    let onB = pool.connections.filter { $0.endpoint.port == b.port }
                    #expect(onB.count == 2)
                    let counter = LoadCounter()
                    let stop = StopFlag()
                    let callers = 8
                    let load = Task { await steadyLoad(pool: pool, callers: callers, counter: counter, stop: stop) }
                    #expect(await poll { counter.successes > 200 })

                    await b.stop()
                    let successesAtStop = counter.successes
                    #expect(await poll { onB.allSatisfy { !$0.isHealthy } })
                    #expect(await poll { counter.successes > successesAtStop + 500 }, "calls keep succeeding on A")
                    // Only calls around B's fall fail, each with UNAVAILABLE: the one each caller
                    // had in flight there, and at most one more per caller, picked in the moment
                    // before the core reported the channel's change (it may still say ready).
                    #expect(counter.failures.count <= 2 * callers, "failures: \(counter.failures)")
                    #expect(counter.failures.allSatisfy { $0 == .unavailable })
                    #expect(onB.allSatisfy { $0.state != .ready })
                    #expect(pool.metrics().healthyConnections == 2)

                    let failuresWhileDown = counter.failures.count
                    try await b.restart()
                    // Back within the backoff bound: the core's reconnect backoff and the pool's
                    // recovery both start at retryDelay (100 ms) and cap at 400 ms.
                    #expect(
                        await poll(timeLimit: .seconds(5)) { onB.allSatisfy { $0.isHealthy && $0.state == .ready } }
                    )
                    let requestsOnB = onB.map { $0.metrics().totalRequests }
                    #expect(await poll { zip(onB, requestsOnB).allSatisfy { $0.metrics().totalRequests > $1 + 20 } })
                    #expect(onB.allSatisfy { $0.metrics().reconnects >= 1 })
                    stop.set()
                    await load.value
                    #expect(counter.failures.count == failuresWhileDown, "no failures after the restart")
                }
            }
        }
    }

    @Test("A server reporting NOT_SERVING leaves the rotation and returns when SERVING again")
    func notServing() async throws {
        try await withDemoServer { a in
            try await withDemoServer { b in
                for server in [a, b] { server.health.setStatus(.serving, forService: "bench.Echo") }
                let config = testConfig([a.target, b.target], poolSize: 2) { $0.healthCheck.serviceName = "bench.Echo" }
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    let onB = pool.connections.first { $0.endpoint.port == b.port }!
                    b.health.setStatus(.notServing, forService: "bench.Echo")
                    #expect(await poll { !onB.isHealthy })
                    let before = onB.metrics().totalRequests
                    for _ in 0..<50 { _ = try await pool.unary(method: echoUnary, request: [1]) }
                    #expect(onB.metrics().totalRequests == before, "no call goes to a NOT_SERVING server")
                    #expect(onB.metrics().lastError?.contains("NOT_SERVING") == true)

                    b.health.setStatus(.serving, forService: "bench.Echo")
                    #expect(await poll { onB.isHealthy })
                    for _ in 0..<50 { _ = try await pool.unary(method: echoUnary, request: [1]) }
                    #expect(onB.metrics().totalRequests >= before + 20)
                }
            }
        }
    }

    @Test("All connections down: fail fast fails at once with UNAVAILABLE")
    func allDownFailFast() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 2) { $0.whenNoneHealthy = .failFast }
            try await withPoolManager(["echo": config]) { manager in
                let pool = try manager.pool(for: "echo")
                await server.stop()
                #expect(await poll { pool.metrics().healthyConnections == 0 })
                let clock = ContinuousClock()
                let start = clock.now
                let error = await #expect(throws: RPCError.self) {
                    try await pool.unary(
                        method: echoUnary,
                        request: [1],
                        options: CoreCallOptions(timeout: .seconds(30))
                    )
                }
                #expect(error?.code == .unavailable)
                #expect(error?.message.contains("no healthy connection") == true)
                #expect(error?.cause is GRPCPoolError)
                #expect(clock.now - start < .seconds(10), "it did not wait for the 30 s deadline")
            }
        }
    }

    @Test("All connections down: waiting until the deadline, and succeeding when one comes back")
    func allDownWait() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 2)  // .waitUntilDeadline is the default
            try await withPoolManager(["echo": config]) { manager in
                let pool = try manager.pool(for: "echo")
                await server.stop()
                #expect(await poll { pool.metrics().healthyConnections == 0 })
                let clock = ContinuousClock()
                let start = clock.now
                let error = await #expect(throws: RPCError.self) {
                    try await pool.unary(
                        method: echoUnary,
                        request: [1],
                        options: CoreCallOptions(timeout: .milliseconds(300))
                    )
                }
                #expect(error?.code == .deadlineExceeded)
                #expect(clock.now - start >= .milliseconds(300))

                let waiting = Task {
                    try await pool.unary(
                        method: echoUnary,
                        request: [8],
                        options: CoreCallOptions(timeout: .seconds(8))
                    )
                }
                #expect(await poll { pool.waitingCalls == 1 })
                try await server.restart()
                let response = try await waiting.value
                #expect(response.message == [8])
            }
        }
    }

    @Test("All connections down: use-any hands out a connection and the call fails on it")
    func allDownUseAny() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 2) { $0.whenNoneHealthy = .useAnyConnection }
            try await withPoolManager(["echo": config]) { manager in
                let pool = try manager.pool(for: "echo")
                await server.stop()
                #expect(await poll { pool.metrics().healthyConnections == 0 })
                let before = pool.metrics().failedRequests
                let error = await #expect(throws: RPCError.self) {
                    try await manager.withConnection(to: "echo") { connection in
                        try await connection.unary(method: echoUnary, request: [1])
                    }
                }
                #expect(error?.code == .unavailable)
                #expect(!(error?.cause is GRPCPoolError), "the failure comes from the connection, not the pool")
                #expect(pool.metrics().failedRequests == before + 1)
            }
        }
    }

    @Test("Graceful shutdown lets calls in flight finish, refuses new ones, and releases the channels")
    func gracefulShutdown() async throws {
        try await withDemoServer { server in
            let manager = try PoolManager(
                services: ["echo": testConfig([server.target], poolSize: 2)],
                logger: quietLogger
            )
            let pool = try manager.pool(for: "echo")
            let running = Task { try await manager.run() }
            #expect(await poll { pool.metrics().healthyConnections == 2 })

            let inFlight = (0..<4).map { index in
                Task {
                    // A deadline well past the delay: on busy cores the 5 s default ran out once.
                    try await pool.unary(
                        method: echoUnary,
                        request: [UInt8(index)],
                        metadata: ["echo-delay-ms": "500"],
                        options: CoreCallOptions(timeout: .seconds(30))
                    )
                }
            }
            #expect(await poll { pool.metrics().inFlight == 4 })
            manager.beginGracefulShutdown()

            let refused = await #expect(throws: RPCError.self) { try await pool.unary(method: echoUnary, request: [1]) }
            #expect(refused?.code == .failedPrecondition)
            #expect(refused?.message.contains("shutting down") == true)

            for (index, task) in inFlight.enumerated() {
                let response = try await task.value
                #expect(response.message == [UInt8(index)])
            }
            try await running.value
            #expect(pool.connections.allSatisfy { $0.state == .shutdown })
            #expect(pool.connections.allSatisfy { $0.channel.liveCalls == 0 })
            #expect(pool.metrics().successfulRequests == 4)
        }
    }
}
