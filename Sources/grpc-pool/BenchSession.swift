import DemoServices
import Foundation
import GRPCCore
import GRPCPool

/// One `grpc-pool bench` run against its echo server: measures rows, collects them and the
/// ratios between peers measured in the same run, and prints them at the end.
final class BenchSession {
    let options: Bench
    let server: ServerProcess
    let clients: BenchClients
    private(set) var rows: [[String: Any]] = []
    var ratios: [String: Double] = [:]
    /// The pool stub's client CPU per unary 32 B call at each concurrency (µs): what a stream's
    /// message round trip is compared with.
    var poolUnaryCPU: [Int: Double] = [:]
    let small = [UInt8](repeating: 7, count: 32)

    init(options: Bench, server: ServerProcess, clients: BenchClients) {
        self.options = options
        self.server = server
        self.clients = clients
    }

    func say(_ line: String) {
        if !self.options.json { writeLine(line) }
    }

    /// One row: a warm-up, then the measured run; printed and kept.
    @discardableResult
    func measure(
        _ client: String,
        _ workload: String,
        concurrency: Int,
        serverPID: Int32? = nil,
        _ call: @escaping @Sendable () async throws -> Void
    ) async throws -> Measure.Row {
        _ = try await Measure.run(
            concurrency: concurrency,
            duration: .seconds(self.options.warmup),
            serverPID: nil,
            call
        )
        let row = try await Measure.run(
            concurrency: concurrency,
            duration: .seconds(self.options.duration),
            serverPID: serverPID ?? self.server.pid,
            call
        )
        self.keep(row, client: client, workload: workload, concurrency: concurrency)
        return row
    }

    /// The C-core ceiling's row (e): the core's own loop, no Swift task per call.
    func measureCeiling(_ workload: String, payload: [UInt8], concurrency: Int) async -> Measure.Row {
        _ = await Measure.ceiling(
            clients: self.clients,
            payload: payload,
            concurrency: concurrency,
            duration: .seconds(self.options.warmup),
            serverPID: nil
        )
        let row = await Measure.ceiling(
            clients: self.clients,
            payload: payload,
            concurrency: concurrency,
            duration: .seconds(self.options.duration),
            serverPID: self.server.pid
        )
        self.keep(row, client: "(e) C-core loop", workload: workload, concurrency: concurrency)
        return row
    }

    private func keep(_ row: Measure.Row, client: String, workload: String, concurrency: Int) {
        self.say(row.line(client: client, workload: workload, concurrency: concurrency))
        self.rows.append(row.json(client: client, workload: workload, concurrency: concurrency))
    }

    /// Unary 32 B at one concurrency: every client, (a) and (c) A B A B so that drift cancels in
    /// their ratios.
    func unaryRows(concurrency level: Int) async throws {
        let (clients, small) = (self.clients, self.small)
        let a1 = try await self.measure("(a) pool stub", "unary 32 B", concurrency: level) {
            try await clients.poolStub(small)
        }
        let c1 = try await self.measure("(c) NIO client", "unary 32 B", concurrency: level) {
            try await clients.nio(small)
        }
        let a2 = try await self.measure("(a) pool stub", "unary 32 B", concurrency: level) {
            try await clients.poolStub(small)
        }
        let c2 = try await self.measure("(c) NIO client", "unary 32 B", concurrency: level) {
            try await clients.nio(small)
        }
        // What a user gets without tuning, beside its peer on equal settings.
        try await self.measure("(a) pool stub, defaults", "unary 32 B", concurrency: level) {
            try await clients.poolStub(small, settings: .defaults)
        }
        try await self.measure("(c) NIO client, defaults", "unary 32 B", concurrency: level) {
            try await clients.nio(small, settings: .defaults)
        }
        try await self.measure("(b) withConnection", "unary 32 B", concurrency: level) {
            try await clients.lease(small)
        }
        // The pool's own unary call, below GRPCCore: what the pool and the core layer cost
        // without the client executor that generated stubs go through.
        let own = try await self.measure("(a′) pool, own call", "unary 32 B", concurrency: level) {
            try await clients.poolRaw(small)
        }
        try await self.measure("(c) NIO ×\(self.options.connections) clients", "unary 32 B", concurrency: level) {
            try await clients.nioRoundRobin(small)
        }
        try await self.measure("(d) core channel", "unary 32 B", concurrency: level) {
            try await clients.coreChannel(small)
        }
        let e = await self.measureCeiling("unary 32 B", payload: small, concurrency: level)
        self.poolUnaryCPU[level] = (a1.cpuPerCall + a2.cpuPerCall) / 2
        self.ratios["pool_vs_nio_qps_c\(level)"] = (a1.qps + a2.qps) / (c1.qps + c2.qps)
        self.ratios["pool_vs_nio_cpu_c\(level)"] = (a1.cpuPerCall + a2.cpuPerCall) / (c1.cpuPerCall + c2.cpuPerCall)
        self.ratios["pool_vs_nio_p50_c\(level)"] = (a1.p50 + a2.p50) / (c1.p50 + c2.p50)
        self.ratios["pool_vs_core_cpu_c\(level)"] = (a1.cpuPerCall + a2.cpuPerCall) / 2 / e.cpuPerCall
        self.ratios["pool_own_call_vs_core_cpu_c\(level)"] = own.cpuPerCall / e.cpuPerCall
    }

    /// Unary 64 KiB and bidirectional ping-pong (a row's calls are streams of 10 round trips).
    func largeAndStreamingRows() async throws {
        let (clients, small) = (self.clients, self.small)
        let large = [UInt8](repeating: 7, count: 64 << 10)
        try await self.measure("(a) pool stub", "unary 64 KiB", concurrency: 16) {
            try await clients.poolStub(large)
        }
        try await self.measure("(c) NIO client", "unary 64 KiB", concurrency: 16) { try await clients.nio(large) }
        try await self.measure("(a) pool stub, defaults", "unary 64 KiB", concurrency: 16) {
            try await clients.poolStub(large, settings: .defaults)
        }
        try await self.measure("(c) NIO client, defaults", "unary 64 KiB", concurrency: 16) {
            try await clients.nio(large, settings: .defaults)
        }
        _ = await self.measureCeiling("unary 64 KiB", payload: large, concurrency: 16)
        for settings in [BenchSettings.tuned, .defaults] {
            let suffix = settings == .tuned ? "" : ", defaults"
            try await self.measure("(a) pool stub\(suffix)", "bidi 10×32 B", concurrency: 16) {
                try await clients.poolPingPong(small, settings: settings)
            }
            try await self.measure("(c) NIO client\(suffix)", "bidi 10×32 B", concurrency: 16) {
                try await clients.nioPingPong(small, settings: settings)
            }
        }
    }

    /// Acquire + release of a pooled connection: median ns per operation, over batches of 1000.
    func acquireRelease(tasks: Int) async throws {
        let median = try await Measure.acquireRelease(
            clients: self.clients,
            tasks: tasks,
            duration: .seconds(self.options.duration)
        )
        self.say(String(format: "acquire + release, %2d task(s): median %.0f ns/op", tasks, median))
        self.rows.append(["client": "acquire+release", "concurrency": tasks, "median_ns_per_op": median])
        self.ratios["acquire_release_median_ns_\(tasks)"] = median
    }

    /// Scaling: a server that allows 16 concurrent streams per connection and takes 20 ms per
    /// call, 128 calls at once: one connection can carry 16 / 20 ms = 800 calls/s, so the stream
    /// limit, not the server's CPU, bounds each connection.
    func scalingRows() async throws {
        let limited = try await ServerProcess.start(maxConcurrentStreams: 16)
        defer { limited.stop() }
        var scaling: [Int: Double] = [:]
        for size in [1, 2, 4, 8] {
            let pool = try await BenchClients(
                endpoint: .init(host: "127.0.0.1", port: limited.port),
                connections: size,
                nioClients: 0
            )
            let row = try await self.measure(
                "(a) pool of \(size)",
                "16 str/conn 20ms",
                concurrency: 128,
                serverPID: limited.pid
            ) { [small] in
                try await pool.poolStub(small, metadata: ["echo-delay-ms": "20"])
            }
            scaling[size] = row.qps
            pool.shutdown()
        }
        self.ratios["scaling_pool8_vs_pool1_qps"] = (scaling[8] ?? 0) / max(scaling[1] ?? 1, 1)
    }

    /// One slow endpoint of three: two servers answer at once, one 100 ms late; a pool of 3 (one
    /// connection each), 16 calls at once, round robin against least-busy, A B A B.
    func slowEndpointRows(fast: [ServerProcess], slow: ServerProcess) async throws {
        let endpoints = (fast + [slow]).map { PoolManager.Endpoint(host: "127.0.0.1", port: $0.port) }
        var p99: [BalancingPolicy: [Double]] = [:]
        for policy in [BalancingPolicy.roundRobin, .leastBusy, .roundRobin, .leastBusy] {
            let pool = try await BenchClients(endpoints: endpoints, connections: 3, nioClients: 0, balancing: policy)
            let row = try await self.measure(
                "(a) pool, \(policy)",
                "1 of 3 slow",
                concurrency: 16,
                serverPID: slow.pid
            ) { [small] in
                try await pool.poolStub(small)
            }
            // The slow endpoint is connection 2; the share counts the warm-up too.
            let share =
                Double(pool.pool.connections[2].metrics().totalRequests)
                / Double(max(pool.pool.metrics().totalRequests, 1))
            self.say(String(format: "  calls on the slow endpoint: %.2f %%", share * 100))
            self.rows[self.rows.count - 1]["slow_endpoint_share"] = share
            p99[policy, default: []].append(row.p99)
            pool.shutdown()
        }
        self.ratios["p2c_vs_rr_p99_slow_endpoint"] =
            (p99[.roundRobin] ?? []).reduce(0, +) / max((p99[.leastBusy] ?? []).reduce(0, +), 1)
    }

    /// The adaptive pool's behaviour under faults and load: outcomes, not speeds.
    func adaptiveRows(fast: [ServerProcess], slow: ServerProcess) async throws {
        self.say("")
        let say: (String) -> Void = { self.say($0) }
        for row in [
            try await AdaptiveBench.stalled(backends: fast, say: say),
            try await AdaptiveBench.loadStep(backend: fast[0], say: say),
            try await AdaptiveBench.newBackend(say: say),
            try await AdaptiveBench.dnsBackendAdded(say: say),
            try await AdaptiveBench.etcdBackendAdded(say: say),
            try await AdaptiveBench.queueBound(slow: slow, say: say),
        ] {
            self.rows.append(row.merging(["client": "(a) pool"]) { current, _ in current })
        }
    }

    /// Every row and ratio: one JSON object with `--json`, else the ratios after the table.
    func report() throws {
        if self.options.json {
            let data = try JSONSerialization.data(
                withJSONObject: ["rows": self.rows, "ratios": self.ratios],
                options: [.sortedKeys]
            )
            print(String(decoding: data, as: UTF8.self))
        } else {
            writeLine("")
            for (key, value) in self.ratios.sorted(by: { $0.key < $1.key }) {
                writeLine(String(format: "%@ = %.2f", key, value))
            }
        }
    }
}
