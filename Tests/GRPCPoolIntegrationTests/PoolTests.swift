import DemoServices
import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge
import Testing

@Suite("Connection pool against real servers")
struct PoolTests {
    @Test("A pool of 3 makes 3 TCP connections and round robin splits 3,000 calls evenly")
    func roundRobinSpread() async throws {
        try await withDemoServer { server in
            try await withPoolManager(["echo": testConfig([server.target])]) { manager in
                let pool = try manager.pool(for: "echo")
                for index in 0..<3000 {
                    let request = [UInt8(truncatingIfNeeded: index)]
                    let response = try await pool.unary(method: echoUnary, request: request)
                    #expect(response.message == request)
                }
                let counts = pool.metrics().connections.map(\.totalRequests)
                #expect(counts.count == 3)
                for count in counts {
                    #expect((900...1100).contains(count), "per-connection calls: \(counts)")
                }
                #expect(server.peers.count == 3)
                #expect(pool.metrics().totalRequests == 3000)
                #expect(pool.metrics().successRate == 1)
            }
        }
    }

    @Test("Least-in-flight picks the idle connection while others are busy")
    func leastInFlight() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 2) { $0.balancing = .leastInFlight }
            try await withPoolManager(["echo": config]) { manager in
                let pool = try manager.pool(for: "echo")
                // A slow call occupies one connection; quick calls must all go to the other. It
                // is cancelled at the end; its delay only has to outlast the test on busy cores.
                let slow = Task {
                    try await pool.unary(
                        method: echoUnary,
                        request: [1],
                        metadata: ["echo-delay-ms": "120000"],
                        options: CoreCallOptions(timeout: .seconds(150))
                    )
                }
                #expect(await poll { pool.metrics().inFlight == 1 })
                let busy = pool.metrics().connections.first { $0.inFlight == 1 }!.index
                for _ in 0..<50 { _ = try await pool.unary(method: echoUnary, request: [2]) }
                let metrics = pool.metrics().connections
                #expect(metrics[1 - busy].totalRequests == 50)
                #expect(metrics[busy].inFlight == 1, "the slow call was still running throughout")
                slow.cancel()
                let outcome = await slow.result
                #expect(throws: RPCError.self) { try outcome.get() }
            }
        }
    }

    @Test("The seed's three services report metrics and health that match what happened")
    func threeServices() async throws {
        try await withDemoServer { stt in
            try await withDemoServer { nlp in
                try await withDemoServer { summary in
                    let services: [ServiceID: PoolManager.ServiceConfig] = [
                        "stt": testConfig([stt.target], poolSize: 3),
                        "nlp": testConfig([nlp.target], poolSize: 2),
                        "summary": testConfig([summary.target], poolSize: 2),
                    ]
                    try await withPoolManager(services) { manager in
                        let sttPool = try manager.pool(for: "stt")
                        for index in 0..<100 {
                            // Every fourth call fails with INTERNAL.
                            let metadata: Metadata = index % 4 == 0 ? ["echo-status": "13"] : [:]
                            _ = try? await sttPool.unary(method: echoUnary, request: [1], metadata: metadata)
                        }
                        let nlpPool = try manager.pool(for: "nlp")
                        for _ in 0..<20 {
                            _ = try await nlpPool.unary(
                                method: echoUnary,
                                request: [1],
                                metadata: ["echo-delay-ms": "25"]
                            )
                        }

                        let metrics = manager.metrics()
                        #expect(Set(metrics.keys) == ["stt", "nlp", "summary"])
                        #expect(metrics["stt"]?.totalRequests == 100)
                        #expect(metrics["stt"]?.failedRequests == 25)
                        #expect(metrics["stt"]?.successRate == 0.75)
                        #expect(metrics["nlp"]?.totalRequests == 20)
                        #expect(metrics["nlp"]?.successRate == 1)
                        let nlpAverage = try #require(metrics["nlp"]?.averageResponseTimeMilliseconds)
                        #expect(nlpAverage >= 25 && nlpAverage < 500, "nlp average \(nlpAverage) ms")
                        #expect(try #require(metrics["nlp"]?.p99ResponseTime) >= .milliseconds(25))
                        #expect(metrics["summary"]?.totalRequests == 0)
                        #expect(metrics["summary"]?.healthyConnections == 2)
                        #expect(metrics["stt"]?.connections.count == 3)

                        #expect(await manager.healthCheck() == ["stt": true, "nlp": true, "summary": true])
                        await summary.stop()
                        let down = await poll { await manager.healthCheck()["summary"] == false }
                        #expect(down)
                        #expect(await manager.healthCheck()["stt"] == true)
                    }
                }
            }
        }
    }

    @Test("An unknown service id gets a clear error")
    func unknownService() async throws {
        try await withDemoServer { server in
            try await withPoolManager(["stt": testConfig([server.target], poolSize: 1)]) { manager in
                let error = await #expect(throws: GRPCPoolError.self) {
                    try await manager.withConnection(to: "tts") { _ in }
                }
                #expect(error?.code == .unknownService)
                #expect(error?.message.contains("'tts'") == true)
                #expect(error?.message.contains("stt") == true)
            }
        }
    }

    @Test("withConnection returns the connection when the body throws or is cancelled")
    func withConnectionReturns() async throws {
        struct Boom: Error {}
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 1) { $0.balancing = .leastInFlight }
            try await withPoolManager(["echo": config]) { manager in
                await #expect(throws: Boom.self) {
                    try await manager.withConnection(to: "echo") { connection in
                        _ = try await connection.unary(method: echoUnary, request: [1])
                        throw Boom()
                    }
                }
                let connection = try manager.pool(for: "echo").connections[0]
                let task = Task {
                    try await manager.withConnection(to: "echo") { connection in
                        try await Task.sleep(for: .seconds(30))
                    }
                }
                // Cancelled while it holds the lease (which counts in the load).
                #expect(await poll { connection.load == 1 })
                task.cancel()
                await #expect(throws: CancellationError.self) { try await task.value }
                #expect(connection.load == 0)
                #expect(connection.inFlight == 0)
                let reply = try await manager.withConnection(to: "echo") { connection in
                    try await connection.unary(method: echoUnary, request: [5]).message
                }
                #expect(reply == [5])
            }
        }
    }
}
