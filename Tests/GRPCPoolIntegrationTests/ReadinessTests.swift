import DemoServices
import GRPCPool
import Testing

@Suite("Readiness: waiting until the connections are healthy")
struct ReadinessTests {
    @Test("waitUntilHealthy returns true once every connection is healthy", arguments: Stack.allCases)
    func becomesHealthy(stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target])], waitForHealthy: false) { manager in
                let pool = try manager.pool(for: "echo")
                #expect(await pool.waitUntilHealthy(timeLimit: .seconds(20)))
                #expect(pool.metrics().healthyConnections == 3)
                #expect(await manager.waitUntilHealthy(timeLimit: .seconds(1)))
            }
        }
    }

    @Test("With the server down it returns false at its time limit; once the server is back, true")
    func serverDownThenBack() async throws {
        let server = CoreServer()
        try await server.start()
        await server.halt()
        defer { server.stop() }
        let config = testConfig([server.target], poolSize: 2)
        try await withPoolManager(["echo": config], waitForHealthy: false) { manager in
            let pool = try manager.pool(for: "echo")
            let clock = ContinuousClock()
            let started = clock.now
            #expect(await pool.waitUntilHealthy(connections: 1, timeLimit: .milliseconds(500)) == false)
            let waited = clock.now - started
            // Only the time limit can end this wait (the server stays down), so the upper bound
            // guards against a hang, not a speed: the parallel phase's start has delayed the
            // timer's wake-up by 5 s on this 2-core machine.
            #expect(waited >= .milliseconds(500) && waited < .seconds(15), "returned after \(waited)")
            #expect(await manager.waitUntilHealthy(timeLimit: .milliseconds(100)) == false)

            try await server.start()
            #expect(await pool.waitUntilHealthy(timeLimit: .seconds(20)))
            #expect(pool.metrics().healthyConnections == 2)
        }
    }

    @Test(
        "waitUntil wakes at the change it waits for: a stopped server, then the calls that follow",
        arguments: Stack.allCases
    )
    func waitUntilCondition(stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 2)]) { manager in
                let pool = try manager.pool(for: "echo")
                let before = pool.metrics().successfulRequests
                let calls = Task {
                    for index in 0..<5 { _ = try await pool.unary(method: echoUnary, request: [UInt8(index)]) }
                }
                #expect(await pool.waitUntil(timeLimit: .seconds(20)) { $0.metrics().successfulRequests >= before + 5 })
                try await calls.value

                await server.halt()
                #expect(await pool.waitUntil(timeLimit: .seconds(20)) { $0.connections.allSatisfy { !$0.isHealthy } })
                #expect(pool.metrics().healthyConnections == 0)
                // A condition that never holds: false at the time limit, not before.
                let clock = ContinuousClock()
                let started = clock.now
                #expect(await pool.waitUntil(timeLimit: .milliseconds(300)) { $0.connections.count > 2 } == false)
                #expect(clock.now - started >= .milliseconds(300))
            }
        }
    }

    @Test("A cancelled wait returns false at once")
    func cancelled() async throws {
        try await withPoolManager(["echo": testConfig(["127.0.0.1:1"], poolSize: 1)], waitForHealthy: false) {
            manager in
            let pool = try manager.pool(for: "echo")
            let clock = ContinuousClock()
            let started = clock.now
            let wait = Task { await pool.waitUntilHealthy(timeLimit: .seconds(60)) }
            wait.cancel()
            #expect(await wait.value == false)
            #expect(clock.now - started < .seconds(10))
        }
    }
}
