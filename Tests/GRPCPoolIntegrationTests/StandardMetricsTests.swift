import DemoServices
import GRPCCore
import GRPCPool
import Metrics
import MetricsTestKit
import Testing

/// gRPC's standard client metrics (gRFC A66, A121's delay, A91's ejections) under their own
/// names and labels, counted exactly against what the calls did.
@Suite("Standard gRPC client metrics (A66)")
struct StandardMetricsTests {
    static let method = "bench.Echo/Unary"

    static func total(_ timers: [TestTimer]) -> Int { timers.reduce(0) { $0 + $1.values.count } }

    static func withStatus(_ status: String) -> [(String, String)] {
        [("grpc.method", Self.method), ("grpc.status", status)]
    }

    static func timers(_ metrics: TestMetrics, _ label: String, status: String) -> [TestTimer] {
        metrics.timers(label: label).filter { timer in
            Self.withStatus(status).allSatisfy { wanted in timer.dimensions.contains { $0 == wanted } }
        }
    }

    @Test(
        "Every attempt, retries included, is started and ends once per status; the call once; the sizes are the messages'"
    )
    func attemptsAndCalls() async throws {
        try await withDemoServer { server in
            let metrics = TestMetrics()
            let manager = try PoolManager(
                services: ["echo": testConfig([server.target], poolSize: 2)],
                logger: quietLogger,
                metricsFactory: metrics
            )
            let pool = try manager.pool(for: "echo")
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await manager.run() }
                defer { manager.beginGracefulShutdown() }
                #expect(await pool.waitUntilHealthy(timeLimit: .seconds(30)))
                // The first call's first two attempts fail (the policy's third succeeds).
                server.failNextCalls(2, with: .init(code: .unavailable, message: "forced"))
                let payload = [UInt8](repeating: 7, count: 100)
                for _ in 0..<20 {
                    let reply = try await pool.client.echo(payload, timeout: .seconds(10))
                    #expect(reply == payload)
                }
            }
            let started = metrics.counters(label: "grpc.client.attempt.started")
                .filter { $0.dimensions.contains { $0 == ("grpc.method", Self.method) } }
            #expect(started.reduce(0) { $0 + $1.totalValue } == 22, "20 calls + 2 retries")
            #expect(Self.total(Self.timers(metrics, "grpc.client.attempt.duration", status: "OK")) == 20)
            #expect(Self.total(Self.timers(metrics, "grpc.client.attempt.duration", status: "UNAVAILABLE")) == 2)
            #expect(Self.total(Self.timers(metrics, "grpc.client.call.duration", status: "OK")) == 20)
            #expect(Self.timers(metrics, "grpc.client.call.duration", status: "UNAVAILABLE").isEmpty)
            let sent = metrics.recorders(label: "grpc.client.attempt.sent_total_compressed_message_size")
                .filter { $0.dimensions.contains { $0 == ("grpc.status", "OK") } }
            #expect(sent.flatMap { $0.values }.count == 20)
            #expect(sent.flatMap { $0.values }.allSatisfy { $0 == 100 })
            let received = metrics.recorders(label: "grpc.client.attempt.rcvd_total_compressed_message_size")
                .filter { $0.dimensions.contains { $0 == ("grpc.status", "OK") } }
            #expect(received.flatMap { $0.values }.allSatisfy { $0 == 100 })
            let labels = try #require(started.first?.dimensions)
            #expect(labels.contains { $0 == ("grpc.target", "dns:///\(server.target)") })
            #expect(labels.contains { $0 == ("grpc.pool.service", "echo") })
        }
    }

    @Test("A call that waits for a full pool adds one attempt delay of type pool_full; one that does not, none")
    func delay() async throws {
        try await withDemoServer { server in
            let metrics = TestMetrics()
            let config = testConfig([server.target], poolSize: 1) { $0.streamCapacity = 2 }
            let manager = try PoolManager(services: ["echo": config], logger: quietLogger, metricsFactory: metrics)
            let pool = try manager.pool(for: "echo")
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await manager.run() }
                defer { manager.beginGracefulShutdown() }
                #expect(await pool.waitUntilHealthy(timeLimit: .seconds(30)))
                _ = try await pool.client.echo([1], timeout: .seconds(20))
                #expect(metrics.timers(label: "grpc.client.attempt.delay.duration").isEmpty)
                let slow = Task {
                    try await pool.unary(method: echoUnary, request: [1], metadata: ["echo-delay-ms": "300"])
                }
                #expect(await poll { pool.metrics().inFlight == 1 })
                _ = try await pool.client.echo([2], timeout: .seconds(20))
                _ = try await slow.value
            }
            let delays = metrics.timers(label: "grpc.client.attempt.delay.duration")
            #expect(Self.total(delays) == 1)
            #expect(delays.first?.dimensions.contains { $0 == ("grpc.delay_type", "pool_full") } == true)
            #expect(delays.first?.dimensions.contains { $0 == ("grpc.method", Self.method) } == true)
            let waited = try #require(delays.first?.values.first)
            #expect(waited > 100_000_000, "it waited for the slow call: \(waited) ns")
        }
    }

    @Test(
        "An outlier ejection counts once in grpc.lb.outlier_detection.ejections_enforced; raw calls are method \"other\""
    )
    func ejection() async throws {
        let hosts = ["127.0.0.1", "127.0.0.2"]
        try await withBackends(.nio, hosts: hosts) { servers, port in
            let metrics = TestMetrics()
            let target = "ipv4:" + hosts.map { "\($0):\(port)" }.joined(separator: ",")
            let manager = try PoolManager(
                services: ["echo": testConfig([target], poolSize: 2) { $0.enableRetries = false }],
                logger: quietLogger,
                metricsFactory: metrics
            )
            let pool = try manager.pool(for: "echo")
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await manager.run() }
                defer { manager.beginGracefulShutdown() }
                #expect(await pool.waitUntilHealthy(timeLimit: .seconds(30)))
                let failing = try #require(servers[1] as? DemoServer)
                failing.failNextCalls(1000, with: .init(code: .unavailable, message: "forced"))
                for _ in 0..<40 { _ = try? await pool.unary(method: echoUnary, request: [1]) }
                #expect(await poll { metrics.counterTotal(label: "grpc.lb.outlier_detection.ejections_enforced") == 1 })
            }
            let ejections = metrics.counters(label: "grpc.lb.outlier_detection.ejections_enforced")
            #expect(ejections.reduce(0) { $0 + $1.totalValue } == 1)
            #expect(ejections.first?.dimensions.contains { $0 == ("grpc.target", target) } == true)
            let raw = metrics.counters(label: "grpc.client.attempt.started")
            #expect(raw.allSatisfy { $0.dimensions.contains { $0 == ("grpc.method", "other") } })
            #expect(raw.reduce(0) { $0 + $1.totalValue } == 40)
        }
    }

    @Test("With no metrics backend, nothing is recorded and calls work")
    func noBackend() async throws {
        try await withDemoServer { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 1)]) { manager in
                let pool = try manager.pool(for: "echo")
                let reply = try await pool.client.echo([3], timeout: .seconds(20))
                #expect(reply == [3])
            }
        }
    }
}
