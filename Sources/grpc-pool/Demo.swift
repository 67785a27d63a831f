import ArgumentParser
import DemoServices
import Foundation
import GRPCCore
import GRPCPool
import Logging
import NIOConcurrencyHelpers
import SwiftProtobuf
import Synchronization

/// The main job: three demo services (stt, nlp, summary), a pool over them, a mixed load, a lost and restored
/// server, and the metrics at the end.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the pool end to end on local demo services (no setup needed)."
    )

    @Option(help: "Seconds to run.")
    var duration: Double = 20

    @Option(help: "Concurrent callers.")
    var concurrency: Int = 16

    @Flag(help: "Print one JSON object at the end instead of the live view and tables.")
    var json = false

    @Flag(help: "Show the pool's own log lines (swift-log, label grpc.pool).")
    var verbose = false

    @Option(
        help:
            "Serve gRPC's channelz service on this port while it runs (0 picks one; printed), for `grpc-pool channelz`."
    )
    var channelzPort: Int?

    func validate() throws {
        guard self.duration >= 2 else { throw ValidationError("--duration must be at least 2 seconds") }
        guard self.concurrency >= 1 else { throw ValidationError("--concurrency must be at least 1") }
    }

    func run() async throws {
        let logger = Logger.cli(verbose: self.verbose)
        let say: @Sendable (String) -> Void = { [json] line in if !json { writeLine(line) } }

        // 1. The services: three real gRPC servers on loopback.
        let servers: [ServiceID: DemoServer] = ["stt": DemoServer(), "nlp": DemoServer(), "summary": DemoServer()]
        for server in servers.values { try await server.start() }
        let order: [ServiceID] = ["stt", "nlp", "summary"]
        say("GRPCPool demo: stt, nlp and summary on \(order.map { servers[$0]!.target }.joined(separator: ", "))")

        // 2. The example configuration of the README.
        let manager = try Self.manager(for: servers, logger: logger)

        // The pool's channels as channelz sees them, for `grpc-pool channelz` meanwhile.
        let channelz = self.channelzPort.map { DemoServer(port: $0, services: [ChannelzService()]) }
        if let channelz {
            try await channelz.start()
            writeLine("channelz on \(channelz.target)")
        }
        defer { if let channelz { Task { await channelz.stop() } } }

        let tally = Tally()
        let finalMetrics = NIOLockedValueBox<[ServiceID: PoolMetrics]>([:])
        let events = EventLog(echo: !self.json)
        let clock = ContinuousClock()
        let started = clock.now
        let total = Duration.milliseconds(Int(self.duration * 1000))

        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await manager.run() }

            // 3. Mixed load through generated stubs.
            let stop = StopSignal()
            async let load: Void = withDiscardingTaskGroup { callers in
                for caller in 0..<self.concurrency {
                    callers.addTask {
                        await Self.callLoop(caller: caller, manager: manager, tally: tally, stop: stop)
                    }
                }
            }

            // 4. Lose a server mid-run, then bring it back.
            group.addTask {
                try await Self.outage(
                    of: servers["summary"]!,
                    in: manager,
                    events: events,
                    from: started,
                    lasting: total
                )
            }

            // 5. The live line, until the time is up.
            try await self.liveLine(manager, order: order, tally: tally, from: started, lasting: total, say: say)
            // The load stops; once every caller has its last answer, the pool's counts and the
            // callers' agree.
            stop.set()
            await load
            finalMetrics.withLockedValue { $0 = manager.metrics() }
            manager.beginGracefulShutdown()
        }
        for server in servers.values { await server.stop() }

        // 6. What happened (the metrics as the load ended, before the shutdown closed everything).
        let metrics = finalMetrics.withLockedValue { $0 }
        if self.json {
            print(
                Self.json(
                    metrics: metrics,
                    order: order,
                    tally: tally,
                    events: events.all,
                    seconds: (clock.now - started).seconds
                )
            )
        } else {
            print("")
            print(Self.serviceTable(metrics, order: order, tally: tally))
            print("")
            print(Self.connectionTable(metrics, order: order))
        }
    }

    /// The README's example configuration, on the demo's servers.
    private static func manager(for servers: [ServiceID: DemoServer], logger: Logger) throws -> PoolManager {
        func config(_ id: ServiceID, poolSize: Int) -> PoolManager.ServiceConfig {
            var config = PoolManager.ServiceConfig(
                host: "127.0.0.1",
                port: servers[id]!.port,
                poolSize: poolSize,
                maxRetries: 3
            )
            config.healthCheck.interval = .seconds(5)
            return config
        }
        return try PoolManager(
            services: [
                "stt": config("stt", poolSize: 3), "nlp": config("nlp", poolSize: 2),
                "summary": config("summary", poolSize: 2),
            ],
            logger: logger
        )
    }

    /// Stops the summary server at 35 % of the run, notes when the pool has taken its
    /// connections out of rotation, restarts it at 55 %, and notes when they are back.
    private static func outage(
        of summary: DemoServer,
        in manager: PoolManager,
        events: EventLog,
        from started: ContinuousClock.Instant,
        lasting total: Duration
    ) async throws {
        let clock = ContinuousClock()
        let pool = try manager.pool(for: "summary")
        try await Task.sleep(until: started.advanced(by: total * 0.35), clock: .continuous)
        events.add(
            "stopping the summary server (\(summary.target)): its connections must leave the rotation",
            at: clock.now - started
        )
        let stoppedAt = clock.now
        await summary.stop()
        _ = await pool.waitUntil(timeLimit: .seconds(5)) { pool in
            pool.connections.allSatisfy { !$0.isHealthy }
        }
        events.add(
            "pool noticed: summary 0/2 healthy, \(Self.ms(clock.now - stoppedAt)) after the stop",
            at: clock.now - started
        )
        try await Task.sleep(until: started.advanced(by: total * 0.55), clock: .continuous)
        try await summary.start()
        let restartedAt = clock.now
        events.add("summary server restarted on the same port", at: clock.now - started)
        _ = await pool.waitUntilHealthy(timeLimit: .seconds(30))
        events.add(
            "reconnected: summary \(pool.metrics().healthyConnections)/2 healthy, \(Self.ms(clock.now - restartedAt)) after the restart",
            at: clock.now - started
        )
    }

    /// Every half second until `total` has passed: calls so far, their rate, errors and each
    /// pool's healthy connections.
    private func liveLine(
        _ manager: PoolManager,
        order: [ServiceID],
        tally: Tally,
        from started: ContinuousClock.Instant,
        lasting total: Duration,
        say: @Sendable (String) -> Void
    ) async throws {
        let clock = ContinuousClock()
        var lastCount = 0
        var lastAt = clock.now
        while clock.now - started < total {
            try await Task.sleep(for: .milliseconds(500))
            let now = clock.now
            let (calls, errors) = tally.totals
            let rate = Double(calls - lastCount) / max((now - lastAt).seconds, 0.001)
            lastCount = calls
            lastAt = now
            let healthy = order.map { id -> String in
                let metrics = manager.metrics()[id]!
                return "\(id) \(metrics.healthyConnections)/\(metrics.poolSize)"
            }.joined(separator: "  ")
            say(
                String(
                    format: "  %5.1fs  calls %7d  %6.0f/s  errors %4d  healthy: %@",
                    (now - started).seconds,
                    calls,
                    rate,
                    errors,
                    healthy
                )
            )
        }
    }

    // MARK: - Load

    static func callLoop(caller: Int, manager: PoolManager, tally: Tally, stop: StopSignal) async {
        var options = CallOptions.defaults
        options.timeout = .seconds(2)
        // Each caller sticks to one service, so losing one service does not stall the others.
        let service: ServiceID = ["stt", "nlp", "summary"][caller % 3]
        while !stop.isSet {
            do {
                switch service.rawValue {
                case "stt":
                    // The README's first way: lease a connection and wrap its client in a stub.
                    _ = try await manager.withConnection(to: "stt") { connection in
                        try await STT.Client(wrapping: connection.client).transcribe(
                            .with { $0.audio = Data(count: 320) },
                            options: options
                        )
                    }
                case "nlp":
                    _ = try await NLP.Client(wrapping: manager.client(for: "nlp")).analyze(
                        .with { $0.text = "a good pool is a good thing" },
                        options: options
                    )
                default:
                    _ = try await Summary.Client(wrapping: manager.client(for: "summary")).summarize(
                        .with {
                            $0.text = "Pools keep connections warm. They route around failures. They report metrics."
                            $0.maxSentences = 2
                        },
                        options: options
                    )
                }
                tally.record(service, ok: true)
            } catch {
                if stop.isSet { return }
                tally.record(service, ok: false)
            }
        }
    }

    // MARK: - Output

    static func ms(_ duration: Duration) -> String {
        String(format: "%.0f ms", duration.seconds * 1000)
    }

    static func serviceTable(_ metrics: [ServiceID: PoolMetrics], order: [ServiceID], tally: Tally) -> String {
        var rows = [
            [
                "service", "requests", "success", "avg ms", "p50 ms", "p99 ms", "reconnects", "healthy",
                "client ok/failed",
            ]
        ]
        for id in order {
            let m = metrics[id]!
            let (ok, failed) = tally.counts(id)
            rows.append([
                id.rawValue, "\(m.totalRequests)", String(format: "%.2f%%", m.successRate * 100),
                String(format: "%.2f", m.averageResponseTime.seconds * 1000),
                String(format: "%.2f", m.p50ResponseTime.seconds * 1000),
                String(format: "%.2f", m.p99ResponseTime.seconds * 1000),
                "\(m.reconnects)", "\(m.healthyConnections)/\(m.poolSize)", "\(ok)/\(failed)",
            ])
        }
        return Self.table(rows)
    }

    static func connectionTable(_ metrics: [ServiceID: PoolMetrics], order: [ServiceID]) -> String {
        var rows = [
            ["service", "conn", "address", "state", "healthy", "requests", "failed", "reconnects", "last error"]
        ]
        for id in order {
            for c in metrics[id]!.connections {
                rows.append([
                    id.rawValue, "\(c.index)", c.address, "\(c.state)", c.isHealthy ? "yes" : "no",
                    "\(c.totalRequests)", "\(c.failedRequests)", "\(c.reconnects)", c.lastError ?? "-",
                ])
            }
        }
        return Self.table(rows)
    }

    /// Left-aligned text columns; numbers right-aligned.
    static func table(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.enumerated().map { column, cell in
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                let numeric = column > 0 && cell.first.map { $0.isNumber } == true
                return column == row.count - 1 ? cell : (numeric ? pad + cell : cell + pad)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    static func json(
        metrics: [ServiceID: PoolMetrics],
        order: [ServiceID],
        tally: Tally,
        events: [(Duration, String)],
        seconds: Double
    ) -> String {
        var services: [String: Any] = [:]
        for id in order {
            let m = metrics[id]!
            let (ok, failed) = tally.counts(id)
            services[id.rawValue] =
                [
                    "requests": m.totalRequests,
                    "successes": m.successfulRequests,
                    "failures": m.failedRequests,
                    "rejected": m.rejectedRequests,
                    "success_rate": m.successRate,
                    "avg_ms": m.averageResponseTime.seconds * 1000,
                    "p50_ms": m.p50ResponseTime.seconds * 1000,
                    "p99_ms": m.p99ResponseTime.seconds * 1000,
                    "reconnects": m.reconnects,
                    "healthy_connections": m.healthyConnections,
                    "pool_size": m.poolSize,
                    "client_successes": ok,
                    "client_failures": failed,
                    "connections": m.connections.map { c in
                        [
                            "index": c.index, "endpoint": c.endpoint, "address": c.address,
                            "state": "\(c.state)", "healthy": c.isHealthy,
                            "requests": c.totalRequests, "successes": c.successfulRequests,
                            "failures": c.failedRequests,
                            "reconnects": c.reconnects,
                        ] as [String: Any]
                    },
                ] as [String: Any]
        }
        let object: [String: Any] = [
            "duration_s": seconds,
            "services": services,
            "events": events.map { ["at_s": $0.0.seconds, "event": $0.1] },
        ]
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}

/// Client-side outcome counts per service, independent of the pool's metrics.
final class Tally: Sendable {
    private let state = NIOLockedValueBox<[ServiceID: (ok: Int, failed: Int)]>([:])

    func record(_ service: ServiceID, ok: Bool) {
        self.state.withLockedValue { counts in
            var entry = counts[service] ?? (0, 0)
            if ok { entry.ok += 1 } else { entry.failed += 1 }
            counts[service] = entry
        }
    }

    func counts(_ service: ServiceID) -> (Int, Int) {
        self.state.withLockedValue { $0[service].map { ($0.ok, $0.failed) } ?? (0, 0) }
    }

    var totals: (calls: Int, errors: Int) {
        self.state.withLockedValue { counts in
            counts.values.reduce((0, 0)) { ($0.0 + $1.ok + $1.failed, $0.1 + $1.failed) }
        }
    }
}

final class StopSignal: Sendable {
    private let flag = Atomic(false)
    func set() { self.flag.store(true, ordering: .relaxed) }
    var isSet: Bool { self.flag.load(ordering: .relaxed) }
}

final class EventLog: Sendable {
    private let events = NIOLockedValueBox<[(Duration, String)]>([])
    let echo: Bool

    init(echo: Bool) { self.echo = echo }

    func add(_ text: String, at time: Duration) {
        self.events.withLockedValue { $0.append((time, text)) }
        if self.echo { writeLine(String(format: "  %5.1fs  ▶ %@", time.seconds, text)) }
    }

    var all: [(Duration, String)] { self.events.withLockedValue { $0 } }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) + Double(attoseconds) / 1e18
    }

    var milliseconds: Double { self.seconds * 1000 }
}

/// Writes a line to standard output at once (the live view also goes into pipes line by line).
func writeLine(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

extension Logger {
    /// The pool's logger for the command line: info lines with `--verbose`, else warnings only.
    static func cli(verbose: Bool) -> Logger {
        var logger = Logger(label: "grpc.pool")
        logger.logLevel = verbose ? .info : .warning
        return logger
    }
}
