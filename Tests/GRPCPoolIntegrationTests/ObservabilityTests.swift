import DemoServices
import GRPCCore
import GRPCPool
import InMemoryLogging
import Logging
import MetricsTestKit
import Testing

@Suite("Metrics export and logs")
struct ObservabilityTests {
    @Test("Every call reaches swift-metrics with service and connection dimensions")
    func swiftMetrics() async throws {
        try await withDemoServer { server in
            let metrics = TestMetrics()
            let manager = try PoolManager(
                services: ["stt": testConfig([server.target], poolSize: 2)],
                metricsFactory: metrics
            )
            let pool = try manager.pool(for: "stt")
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await manager.run() }
                #expect(await poll { pool.metrics().healthyConnections == 2 })
                for index in 0..<10 {
                    let metadata: Metadata = index < 3 ? ["echo-status": "13"] : [:]
                    _ = try? await pool.unary(method: echoUnary, request: [1], metadata: metadata)
                }
                manager.beginGracefulShutdown()
            }
            #expect(metrics.counters(label: "grpc_pool_rpcs_total").reduce(0) { $0 + $1.totalValue } == 10)
            let perConnection = metrics.counters(label: "grpc_pool_rpcs_total")
            #expect(Set(perConnection.map { $0.dimensions.first { $0.0 == "connection" }!.1 }) == ["0", "1"])
            #expect(perConnection.allSatisfy { $0.dimensions.contains { $0 == ("service", "stt") } })
            let failed = perConnection.filter { $0.dimensions.contains { $0 == ("outcome", "failure") } }
            #expect(failed.reduce(0) { $0 + $1.totalValue } == 3)
            let succeeded = perConnection.filter { $0.dimensions.contains { $0 == ("outcome", "success") } }
            #expect(succeeded.reduce(0) { $0 + $1.totalValue } == 7)
            let timers = metrics.timers(label: "grpc_pool_rpc_duration_seconds")
            #expect(timers.reduce(0) { $0 + $1.values.count } == 10)
            let healthy = try metrics.expectGauge(
                "grpc_pool_connection_healthy",
                [("service", "stt"), ("connection", "0")]
            )
            #expect(healthy.lastValue == 0, "after shutdown the connection is out of rotation")
        }
    }

    @Test(
        "An observer sees each connection connect, be lost, come back and close; A94 subchannel metrics count the same"
    )
    func observerAndSubchannelMetrics() async throws {
        try await withDemoServer { server in
            let metrics = TestMetrics()
            let seen = Collected<PoolEvent>()
            let manager = try PoolManager(
                services: ["stt": testConfig([server.target], poolSize: 2)],
                metricsFactory: metrics,
                observers: [CollectingObserver(events: seen)]
            )
            let pool = try manager.pool(for: "stt")
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await manager.run() }
                #expect(await poll { pool.metrics().healthyConnections == 2 })
                await server.stop()
                // Each connection is lost (a reconnection can slip in while the server's listener
                // closes, and be lost again: at least once).
                #expect(
                    await poll {
                        (0..<2).allSatisfy { index in
                            seen.values.contains { $0.connection == index && $0.isDisconnection }
                        }
                    }
                )
                try await server.start()
                #expect(await poll { pool.metrics().healthyConnections == 2 })
                manager.beginGracefulShutdown()
            }
            let events = seen.values
            for index in 0..<2 {
                let kinds = events.filter { $0.connection == index }.map(\.kind)
                #expect(kinds.first == .connecting, "\(kinds)")
                let firstLoss = kinds.firstIndex { $0.isDisconnection }
                let lost = try #require(firstLoss, "\(kinds)")
                #expect(kinds[..<lost].contains(.connected), "connected before it was lost: \(kinds)")
                #expect(kinds[lost...].contains(.connected), "connected again after the restart: \(kinds)")
                #expect(kinds.last == .closed, "\(kinds)")
                #expect(
                    events.filter { $0.connection == index }.allSatisfy {
                        $0.service == "stt" && $0.endpoint == server.target
                    }
                )
            }
            // The A94 counters say what the events said.
            func total(_ label: String) -> Int64 { metrics.counters(label: label).reduce(0) { $0 + $1.totalValue } }
            #expect(
                total("grpc.subchannel.connection_attempts_succeeded")
                    == Int64(events.count { $0.kind == .connected || $0.kind.isRefresh })
            )
            #expect(total("grpc.subchannel.disconnections") == Int64(events.count(where: \.isDisconnection)))
            #expect(total("grpc.subchannel.disconnections") >= 2)
            let open = try metrics.expectGauge(
                "grpc.subchannel.open_connections",
                [("grpc.target", server.target), ("service", "stt"), ("connection", "0")]
            )
            #expect(open.lastValue == 0, "closed with the pool")
        }
    }

    @Test("Pool events and the periodic metrics line go to the injected logger")
    func logs() async throws {
        try await withDemoServer { server in
            let logs = InMemoryLogHandler()
            let logger = Logger(label: "grpc.pool", factory: { _ in logs })
            let manager = try PoolManager(
                services: ["stt": testConfig([server.target], poolSize: 1)],
                logger: logger,
                metricsLogInterval: .milliseconds(100)
            )
            let pool = try manager.pool(for: "stt")
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await manager.run() }
                #expect(await poll { pool.metrics().healthyConnections == 1 })
                _ = try await pool.unary(method: echoUnary, request: [1])
                #expect(
                    await poll {
                        logs.entries.contains { $0.message == "pool metrics" && $0.metadata["requests"] == "1" }
                    }
                )
                await server.stop()
                #expect(await poll { logs.entries.contains { $0.message == "health check failed" } })
                #expect(
                    await poll { logs.entries.contains { $0.message.description.hasPrefix("reconnection attempt") } }
                )
                try await server.restart()
                #expect(await poll { pool.metrics().healthyConnections == 1 })
                manager.beginGracefulShutdown()
            }
            let messages = logs.entries.map(\.message.description)
            for expected in [
                "pool manager starting", "pool starting", "connection established", "connection lost",
                "pool draining", "connection closed", "pool shut down",
            ] {
                #expect(messages.contains(expected), "missing log line: \(expected)")
            }
            let established = try #require(logs.entries.first { $0.message == "connection established" })
            #expect(established.metadata["grpc.pool.service"] == "stt")
            #expect(established.metadata["grpc.pool.connection"] == "0")
            #expect(established.metadata["grpc.pool.endpoint"] == "\(server.target)")
            let lost = try #require(logs.entries.first { $0.message == "connection lost" })
            #expect(lost.metadata["grpc.pool.reason"] != nil)
            let attempt = try #require(logs.entries.first { $0.message.description.hasSuffix("scheduled") })
            #expect(attempt.metadata["grpc.pool.delay_ms"] != nil)
            #expect(logs.entries.allSatisfy { $0.level <= .info }, "a library logs at info or below")
        }
    }
}

extension PoolEvent {
    var isDisconnection: Bool { self.kind.isDisconnection }
}

extension PoolEvent.Kind {
    var isDisconnection: Bool {
        if case .disconnected = self { return true }
        return false
    }

    var isRefresh: Bool {
        if case .refreshed = self { return true }
        return false
    }
}

/// Keeps every event it is given.
struct CollectingObserver: PoolObserver {
    let events: Collected<PoolEvent>
    func handle(_ event: PoolEvent) { self.events.append(event) }
}
