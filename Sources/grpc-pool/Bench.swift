import ArgumentParser
import DemoServices
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCPool
import GRPCPoolCoreBridge
import Synchronization

/// Side-by-side client benchmarks against one echo server in a separate process.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark GRPCPool against grpc-swift-2's NIO client and the bare C core, on one echo server.",
        discussion: """
            Without --target: starts `grpc-pool serve` as a separate process and runs every client and \
            workload, printing a table (or one JSON object with --json). With --target: runs the pooled \
            client alone against any server exposing bench.Echo/Unary and prints one JSON line.
            """
    )

    @Option(help: "External mode: HOST:PORT of a server exposing bench.Echo/Unary.")
    var target: String?

    @Option(help: "External mode: concurrent calls.")
    var concurrency: Int = 64

    @Option(help: "Seconds per measured row.")
    var duration: Double = 3

    @Option(help: "External mode: request payload bytes.")
    var payload: Int = 32

    @Option(help: "Pool connections.")
    var connections: Int = 4

    @Option(help: "Seconds of warm-up before each row.")
    var warmup: Double = 1

    @Flag(help: "Print one JSON object with every row and the ratios.")
    var json = false

    @Option(help: "Concurrency levels of the unary 32 B workload.")
    var levels: [Int] = [1, 16, 64]

    @Flag(help: "Only the acquire + release and scaling rows.")
    var onlyPool = false

    @Flag(help: "Only the outcome rows (faults, load step, added backends, queue bound).")
    var onlyOutcomes = false

    @Flag(
        help:
            "Memory: resident size after a tenth of --memory-calls unary calls and after all of them (concurrency 64)."
    )
    var memory = false

    @Option(help: "Memory run: how many calls in all.")
    var memoryCalls = 1_000_000

    @Option(
        help:
            "The client of the memory run: pool-stub (a), pool-raw (a′, the pool without GRPCCore), core-channel (d), nio (c), ceiling (e)."
    )
    var memoryClient: MemoryClient = .poolStub

    enum MemoryClient: String, ExpressibleByArgument, CaseIterable, Sendable {
        case poolStub = "pool-stub"
        case poolRaw = "pool-raw"
        case coreChannel = "core-channel"
        case nio
        case ceiling
    }

    func run() async throws {
        if let target = self.target {
            let endpoint = try Endpoints.parse(target)
            let clients = try await BenchClients(endpoint: endpoint, connections: self.connections)
            defer { clients.shutdown() }
            let payload = [UInt8](repeating: 7, count: self.payload)
            _ = try await Measure.run(concurrency: self.concurrency, duration: .seconds(self.warmup), serverPID: nil) {
                try await clients.poolStub(payload)
            }
            let row = try await Measure.run(
                concurrency: self.concurrency,
                duration: .seconds(self.duration),
                serverPID: nil
            ) {
                try await clients.poolStub(payload)
            }
            let object: [String: Any] = [
                "client": "grpcpool", "connections": self.connections, "concurrency": self.concurrency,
                "payload": self.payload, "rpcs": row.calls, "qps": row.qps, "p50_us": row.p50, "p99_us": row.p99,
                "cpu_us_per_rpc": row.cpuPerCall,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }

        let server = try await ServerProcess.start()
        defer { server.stop() }
        let endpoint = PoolManager.Endpoint(host: "127.0.0.1", port: server.port)
        let clients = try await BenchClients(endpoint: endpoint, connections: self.connections)
        defer { clients.shutdown() }
        let say: (String) -> Void = { line in if !self.json { writeLine(line) } }
        if self.memory {
            try await Self.memoryRun(
                clients: clients,
                client: self.memoryClient,
                total: self.memoryCalls,
                json: self.json
            )
            return
        }
        say(
            "server: pid \(server.pid) on 127.0.0.1:\(server.port); \(self.duration) s per row after \(self.warmup) s warm-up"
        )

        var rows: [[String: Any]] = []
        func measure(
            _ client: String,
            _ workload: String,
            concurrency: Int,
            serverPID: Int32? = nil,
            _ call: @escaping @Sendable () async throws -> Void
        ) async throws -> Measure.Row {
            _ = try await Measure.run(concurrency: concurrency, duration: .seconds(self.warmup), serverPID: nil, call)
            let row = try await Measure.run(
                concurrency: concurrency,
                duration: .seconds(self.duration),
                serverPID: serverPID ?? server.pid,
                call
            )
            say(row.line(client: client, workload: workload, concurrency: concurrency))
            rows.append(row.json(client: client, workload: workload, concurrency: concurrency))
            return row
        }
        func measureCeiling(_ workload: String, payload: [UInt8], concurrency: Int) async throws -> Measure.Row {
            _ = await Measure.ceiling(
                clients: clients,
                payload: payload,
                concurrency: concurrency,
                duration: .seconds(self.warmup),
                serverPID: nil
            )
            let row = await Measure.ceiling(
                clients: clients,
                payload: payload,
                concurrency: concurrency,
                duration: .seconds(self.duration),
                serverPID: server.pid
            )
            say(row.line(client: "(e) C-core loop", workload: workload, concurrency: concurrency))
            rows.append(row.json(client: "(e) C-core loop", workload: workload, concurrency: concurrency))
            return row
        }

        say(Measure.Row.header)
        let small = [UInt8](repeating: 7, count: 32)
        var ratios: [String: Double] = [:]
        for level in self.onlyPool || self.onlyOutcomes ? [] : self.levels {
            // A B A B for the pair whose ratio is reported, so drift cancels.
            let a1 = try await measure("(a) pool stub", "unary 32 B", concurrency: level) {
                try await clients.poolStub(small)
            }
            let c1 = try await measure("(c) NIO client", "unary 32 B", concurrency: level) {
                try await clients.nio(small)
            }
            let a2 = try await measure("(a) pool stub", "unary 32 B", concurrency: level) {
                try await clients.poolStub(small)
            }
            let c2 = try await measure("(c) NIO client", "unary 32 B", concurrency: level) {
                try await clients.nio(small)
            }
            _ = try await measure("(b) withConnection", "unary 32 B", concurrency: level) {
                try await clients.lease(small)
            }
            // The pool's own unary call, below GRPCCore: what the pool and the core layer cost
            // without the client executor that generated stubs go through.
            let own = try await measure("(a′) pool, own call", "unary 32 B", concurrency: level) {
                try await clients.poolRaw(small)
            }
            _ = try await measure("(c) NIO ×\(self.connections) clients", "unary 32 B", concurrency: level) {
                try await clients.nioRoundRobin(small)
            }
            _ = try await measure("(d) core channel", "unary 32 B", concurrency: level) {
                try await clients.coreChannel(small)
            }
            let e = try await measureCeiling("unary 32 B", payload: small, concurrency: level)
            ratios["pool_vs_nio_qps_c\(level)"] = (a1.qps + a2.qps) / (c1.qps + c2.qps)
            ratios["pool_vs_nio_cpu_c\(level)"] = (a1.cpuPerCall + a2.cpuPerCall) / (c1.cpuPerCall + c2.cpuPerCall)
            ratios["pool_vs_nio_p50_c\(level)"] = (a1.p50 + a2.p50) / (c1.p50 + c2.p50)
            ratios["pool_vs_core_cpu_c\(level)"] = (a1.cpuPerCall + a2.cpuPerCall) / 2 / e.cpuPerCall
            ratios["pool_own_call_vs_core_cpu_c\(level)"] = own.cpuPerCall / e.cpuPerCall
        }
        if !self.onlyPool && !self.onlyOutcomes {
            let large = [UInt8](repeating: 7, count: 64 << 10)
            _ = try await measure("(a) pool stub", "unary 64 KiB", concurrency: 16) {
                try await clients.poolStub(large)
            }
            _ = try await measure("(c) NIO client", "unary 64 KiB", concurrency: 16) { try await clients.nio(large) }
            _ = try await measureCeiling("unary 64 KiB", payload: large, concurrency: 16)
            // Bidirectional ping-pong: a row's calls are streams of 10 round trips each.
            _ = try await measure("(a) pool stub", "bidi 10×32 B", concurrency: 16) {
                try await clients.pingPong(clients.poolClient, small)
            }
            _ = try await measure("(c) NIO client", "bidi 10×32 B", concurrency: 16) {
                try await clients.pingPong(clients.nioClients[0], small)
            }
        }

        // Acquire + release of a pooled connection: median ns per operation, over batches of 1000.
        for tasks in self.onlyOutcomes ? [] : [1, 64] {
            let median = try await Measure.acquireRelease(
                clients: clients,
                tasks: tasks,
                duration: .seconds(self.duration)
            )
            say(String(format: "acquire + release, %2d task(s): median %.0f ns/op", tasks, median))
            rows.append(["client": "acquire+release", "concurrency": tasks, "median_ns_per_op": median])
            ratios["acquire_release_median_ns_\(tasks)"] = median
        }

        // Scaling: a server that allows 16 concurrent streams per connection and takes 20 ms per
        // call, 128 calls at once: one connection can carry 16 / 20 ms = 800 calls/s, so the
        // stream limit, not the server's CPU, bounds each connection.
        let limited = try await ServerProcess.start(maxConcurrentStreams: 16)
        defer { limited.stop() }
        var scaling: [Int: Double] = [:]
        for size in self.onlyOutcomes ? [] : [1, 2, 4, 8] {
            let pool = try await BenchClients(
                endpoint: .init(host: "127.0.0.1", port: limited.port),
                connections: size,
                nioClients: 0
            )
            let row = try await measure(
                "(a) pool of \(size)",
                "16 str/conn 20ms",
                concurrency: 128,
                serverPID: limited.pid
            ) {
                try await pool.poolStub(small, metadata: ["echo-delay-ms": "20"])
            }
            scaling[size] = row.qps
            pool.shutdown()
        }
        if !scaling.isEmpty {
            ratios["scaling_pool8_vs_pool1_qps"] = (scaling[8] ?? 0) / max(scaling[1] ?? 1, 1)
        }

        // One slow endpoint of three: two servers answer at once, one 100 ms late; a pool of 3
        // (one connection each), 16 calls at once, round robin against least-busy, A B A B.
        let fast = [try await ServerProcess.start(), try await ServerProcess.start()]
        let slow = try await ServerProcess.start(delayMs: 100)
        defer { for server in fast + [slow] { server.stop() } }
        let endpoints = (fast + [slow]).map { PoolManager.Endpoint(host: "127.0.0.1", port: $0.port) }
        var p99: [BalancingPolicy: [Double]] = [:]
        for policy in self.onlyOutcomes ? [] : [BalancingPolicy.roundRobin, .leastBusy, .roundRobin, .leastBusy] {
            let pool = try await BenchClients(endpoints: endpoints, connections: 3, nioClients: 0, balancing: policy)
            let row = try await measure("(a) pool, \(policy)", "1 of 3 slow", concurrency: 16, serverPID: slow.pid) {
                try await pool.poolStub(small)
            }
            // The slow endpoint is connection 2; the share counts the warm-up too.
            let share =
                Double(pool.pool.connections[2].metrics().totalRequests)
                / Double(max(pool.pool.metrics().totalRequests, 1))
            say(String(format: "  calls on the slow endpoint: %.2f %%", share * 100))
            rows[rows.count - 1]["slow_endpoint_share"] = share
            p99[policy, default: []].append(row.p99)
            pool.shutdown()
        }
        if !p99.isEmpty {
            ratios["p2c_vs_rr_p99_slow_endpoint"] =
                (p99[.roundRobin] ?? []).reduce(0, +) / max((p99[.leastBusy] ?? []).reduce(0, +), 1)
        }

        // The adaptive pool's behaviour under faults and load: outcomes, not speeds.
        say("")
        for row in [
            try await AdaptiveBench.stalled(backends: fast, say: say),
            try await AdaptiveBench.loadStep(backend: fast[0], say: say),
            try await AdaptiveBench.newBackend(say: say),
            try await AdaptiveBench.dnsBackendAdded(say: say),
            try await AdaptiveBench.queueBound(slow: slow, say: say),
        ] {
            rows.append(row.merging(["client": "(a) pool"]) { current, _ in current })
        }

        if self.json {
            let data = try JSONSerialization.data(
                withJSONObject: ["rows": rows, "ratios": ratios],
                options: [.sortedKeys]
            )
            print(String(decoding: data, as: UTF8.self))
        } else {
            writeLine("")
            for (key, value) in ratios.sorted(by: { $0.key < $1.key }) {
                writeLine(String(format: "%@ = %.2f", key, value))
            }
        }
    }
}

extension Bench {
    /// Resident size after `total` / 10 and after `total` unary 32 B calls at concurrency 64: the
    /// pool must not grow with the number of calls it has made. `client` picks whose calls, so
    /// that growth can be traced to a layer.
    static func memoryRun(clients: BenchClients, client: MemoryClient, total: Int, json: Bool) async throws {
        let payload = [UInt8](repeating: 7, count: 32)
        // One call of the client; none for the ceiling, whose calls run as chains on the poller.
        let call: (@Sendable () async throws -> Void)?
        switch client {
        case .poolStub: call = { try await clients.poolStub(payload) }
        case .poolRaw: call = { try await clients.poolRaw(payload) }
        case .coreChannel: call = { try await clients.coreChannel(payload) }
        case .nio: call = { try await clients.nio(payload) }
        case .ceiling: call = nil
        }
        let issued = SharedCounter()
        func calls(upTo total: Int) async throws {
            guard let call else {
                // (e) has no task per call: its 64 chains run on the poller thread.
                let (_, failures) = await CoreBenchLoop.run(
                    channel: clients.core,
                    method: BenchClients.unaryPath,
                    payload: payload,
                    concurrency: 64,
                    duration: .seconds(3600),
                    calls: total - issued.value
                )
                guard failures == 0 else {
                    throw RPCError(code: .unavailable, message: "\(failures) calls of the ceiling loop failed")
                }
                issued.store(total)
                return
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<64 {
                    group.addTask {
                        while issued.increment() <= total {
                            try await call()
                        }
                    }
                }
                try await group.waitForAll()
            }
            issued.store(total)
        }
        let start = residentMB()
        try await calls(upTo: total / 10)
        let afterTenth = residentMB()
        try await calls(upTo: total)
        let afterAll = residentMB()
        if json {
            let object: [String: Any] = [
                "client": client.rawValue, "calls": total,
                "rss_mb_start": start, "rss_mb_after_tenth": afterTenth, "rss_mb_after_all": afterAll,
                "rss_mb_growth": afterAll - afterTenth,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            writeLine(String(decoding: data, as: UTF8.self))
        } else {
            writeLine("client: \(client.rawValue)")
            writeLine(
                String(
                    format: "rss: %.1f MB at start, %.1f MB after %d calls, %.1f MB after %d (%+.1f MB)",
                    start,
                    afterTenth,
                    total / 10,
                    afterAll,
                    total,
                    afterAll - afterTenth
                )
            )
            writeLine("live core objects: \(LiveObjects.snapshot())")
        }
    }

    /// The current resident set size (VmRSS), in MiB.
    static func residentMB() -> Double {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        let kB = line.split(separator: " ").compactMap { Double($0) }.first ?? 0
        return kB / 1024
    }
}

/// The clients under test, all against the same server.
final class BenchClients: Sendable {
    let manager: PoolManager
    let pool: ConnectionPool
    let poolClient: GRPCClient<ConnectionPool.Transport>
    let nioClients: [GRPCClient<HTTP2ClientTransport.Posix>]
    let nioTasks: [Task<Void, any Error>]
    let managerTask: Task<Void, any Error>
    let core: CoreChannel
    private let cursor = Atomic(0)

    static let descriptor = MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Unary", type: .unary)
    /// The same method as the core layer names it.
    static let unaryPath = "/bench.Echo/Unary"

    convenience init(endpoint: PoolManager.Endpoint, connections: Int, nioClients: Int? = nil) async throws {
        try await self.init(endpoints: [endpoint], connections: connections, nioClients: nioClients)
    }

    /// The pool spreads its connections over `endpoints`; the NIO clients and the core channel
    /// go to the first.
    init(
        endpoints: [PoolManager.Endpoint],
        connections: Int,
        nioClients: Int? = nil,
        balancing: BalancingPolicy = .roundRobin
    ) async throws {
        let endpoint = endpoints[0]
        var config = PoolManager.ServiceConfig(endpoints: endpoints, poolSize: connections)
        config.balancing = balancing
        config.compression = false
        config.enableRetries = false
        config.maxReceiveMessageSize = 16 << 20
        self.manager = try PoolManager(services: ["bench": config], logger: .cli(verbose: false))
        self.pool = try self.manager.pool(for: "bench")
        self.poolClient = self.pool.client
        let manager = self.manager
        self.managerTask = Task { try await manager.run() }
        var nio: [GRPCClient<HTTP2ClientTransport.Posix>] = []
        var tasks: [Task<Void, any Error>] = []
        for _ in 0..<(nioClients ?? max(connections, 1)) {
            let transport = try HTTP2ClientTransport.Posix(
                target: .ipv4(address: endpoint.host, port: endpoint.port),
                transportSecurity: .plaintext
            )
            let client = GRPCClient(transport: transport)
            tasks.append(Task { try await client.runConnections() })
            nio.append(client)
        }
        self.nioClients = nio
        self.nioTasks = tasks
        var options = ChannelOptions()
        options.maxReceiveMessageSize = 16 << 20
        self.core = try CoreChannel(target: endpoint.description, options: options)
        _ = await self.pool.waitUntilHealthy(timeLimit: .seconds(10))
    }

    func shutdown() {
        self.manager.beginGracefulShutdown()
        for client in self.nioClients { client.beginGracefulShutdown() }
        self.core.close()
    }

    private func unary<T: ClientTransport>(
        _ client: GRPCClient<T>,
        _ payload: [UInt8],
        metadata: Metadata = [:]
    ) async throws {
        let reply = try await client.unary(
            request: ClientRequest(message: payload, metadata: metadata),
            descriptor: Self.descriptor,
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: .defaults
        ) { try $0.message }
        guard reply.count == payload.count else { throw RPCError(code: .dataLoss, message: "short echo") }
    }

    /// (a) a stub call on the pool-wide transport.
    func poolStub(_ payload: [UInt8], metadata: Metadata = [:]) async throws {
        try await self.unary(self.poolClient, payload, metadata: metadata)
    }

    /// (b) lease a connection, call on its client.
    func lease(_ payload: [UInt8]) async throws {
        try await self.manager.withConnection(to: "bench") { connection in
            try await self.unary(connection.client, payload)
        }
    }

    /// (c) grpc-swift-2's own NIO client (one).
    func nio(_ payload: [UInt8]) async throws { try await self.unary(self.nioClients[0], payload) }

    static let stream = MethodDescriptor(
        fullyQualifiedService: "bench.Echo",
        method: "Stream",
        type: .bidirectionalStreaming
    )

    /// One bidirectional stream with 10 ping-pongs (each message waits for its echo).
    func pingPong<T: ClientTransport>(_ client: GRPCClient<T>, _ payload: [UInt8]) async throws {
        let (turns, turn) = AsyncStream.makeStream(of: Void.self)
        let request = StreamingClientRequest(of: [UInt8].self) { writer in
            var iterator = turns.makeAsyncIterator()
            for _ in 0..<10 {
                try await writer.write(payload)
                guard await iterator.next() != nil else { return }
            }
        }
        let echoed = try await client.bidirectionalStreaming(
            request: request,
            descriptor: Self.stream,
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: .defaults
        ) { response in
            var count = 0
            for try await _ in response.messages {
                count += 1
                turn.yield()
            }
            turn.finish()
            return count
        }
        guard echoed == 10 else { throw RPCError(code: .dataLoss, message: "\(echoed) of 10 echoes") }
    }

    /// One acquire and release of a pooled connection (no RPC).
    func acquireRelease() async throws {
        try await self.manager.withConnection(to: "bench") { _ in }
    }

    /// (c) N NIO clients, round robin.
    func nioRoundRobin(_ payload: [UInt8]) async throws {
        let index = self.cursor.wrappingAdd(1, ordering: .relaxed).oldValue % self.nioClients.count
        try await self.unary(self.nioClients[index], payload)
    }

    /// (d) one plain core channel through this package's core layer, no pool.
    func coreChannel(_ payload: [UInt8]) async throws {
        _ = try await self.core.unary(method: Self.unaryPath, request: payload)
    }

    /// (a′) the pool's own unary call on raw bytes (`ConnectionPool.unary`): the pool without GRPCCore.
    func poolRaw(_ payload: [UInt8]) async throws {
        _ = try await self.pool.unary(method: Self.unaryPath, request: payload)
    }
}

enum Measure {
    struct Row {
        var calls: Int
        var failures: Int
        var seconds: Double
        var p50: Double  // µs
        var p99: Double  // µs
        var cpuPerCall: Double  // µs of client CPU per call
        var serverCPU: Double?  // share of one core
        var rssMB: Double
        /// The first failure, when there were any.
        var firstError: String? = nil

        var qps: Double { Double(self.calls) / self.seconds }

        static let header =
            "client                     workload       conc     calls/s    p50 µs    p99 µs  cpu µs/call  server cpu  rss MB"

        func line(client: String, workload: String, concurrency: Int) -> String {
            String(
                format: "%@ %@ %5d %11.0f %9.0f %9.0f %12.1f %10@ %7.1f",
                client.padding(toLength: 26, withPad: " ", startingAt: 0),
                workload.padding(toLength: 14, withPad: " ", startingAt: 0),
                concurrency,
                self.qps,
                self.p50,
                self.p99,
                self.cpuPerCall,
                self.serverCPU.map { String(format: "%.0f%%", $0 * 100) } ?? "-",
                self.rssMB
            ) + (self.failures > 0 ? "  (\(self.failures) failed; first: \(self.firstError ?? "?"))" : "")
        }

        func json(client: String, workload: String, concurrency: Int) -> [String: Any] {
            var object: [String: Any] = [
                "client": client, "workload": workload, "concurrency": concurrency, "calls": self.calls,
                "failures": self.failures, "qps": self.qps, "p50_us": self.p50, "p99_us": self.p99,
                "cpu_us_per_call": self.cpuPerCall, "peak_rss_mb": self.rssMB,
            ]
            if let serverCPU = self.serverCPU { object["server_cpu_share"] = serverCPU }
            return object
        }
    }

    /// `concurrency` tasks calling `call` in a loop for `duration`.
    static func run(
        concurrency: Int,
        duration: Duration,
        serverPID: Int32?,
        _ call: @escaping @Sendable () async throws -> Void
    ) async throws -> Row {
        let before = Usage.now(serverPID: serverPID)
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: duration)
        let results = try await withThrowingTaskGroup(of: ([Duration], Int, String?).self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var latencies: [Duration] = []
                    latencies.reserveCapacity(1 << 16)
                    var failures = 0
                    var firstError: String?
                    while clock.now < deadline {
                        let start = clock.now
                        do {
                            try await call()
                            latencies.append(clock.now - start)
                        } catch {
                            failures += 1
                            if firstError == nil { firstError = "\(error)" }
                        }
                    }
                    return (latencies, failures, firstError)
                }
            }
            var all: ([Duration], Int, String?) = ([], 0, nil)
            for try await (latencies, failures, firstError) in group {
                all.0 += latencies
                all.1 += failures
                all.2 = all.2 ?? firstError
            }
            return all
        }
        var row = Self.row(
            latencies: results.0,
            failures: results.1,
            before: before,
            after: Usage.now(serverPID: serverPID)
        )
        row.firstError = results.2
        return row
    }

    /// Median ns per acquire + release, measured over batches of 1000 in `tasks` tasks.
    static func acquireRelease(clients: BenchClients, tasks: Int, duration: Duration) async throws -> Double {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: duration)
        let batches = try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<tasks {
                group.addTask {
                    var perOp: [Double] = []
                    while clock.now < deadline {
                        let start = clock.now
                        for _ in 0..<1000 { try await clients.acquireRelease() }
                        perOp.append((clock.now - start).seconds * 1e9 / 1000)
                    }
                    return perOp
                }
            }
            var all: [Double] = []
            for try await batch in group { all += batch }
            return all.sorted()
        }
        return batches.isEmpty ? 0 : batches[batches.count / 2]
    }

    /// (e) the C-core loop.
    static func ceiling(
        clients: BenchClients,
        payload: [UInt8],
        concurrency: Int,
        duration: Duration,
        serverPID: Int32?
    ) async -> Row {
        let before = Usage.now(serverPID: serverPID)
        let (latencies, failures) = await CoreBenchLoop.run(
            channel: clients.core,
            method: BenchClients.unaryPath,
            payload: payload,
            concurrency: concurrency,
            duration: duration
        )
        return Self.row(
            latencies: latencies,
            failures: failures,
            before: before,
            after: Usage.now(serverPID: serverPID)
        )
    }

    static func row(latencies: [Duration], failures: Int, before: Usage, after: Usage) -> Row {
        let sorted = latencies.map { $0.seconds * 1e6 }.sorted()
        let calls = max(sorted.count, 1)
        let wall = after.wall - before.wall
        return Row(
            calls: sorted.count,
            failures: failures,
            seconds: wall,
            p50: sorted.isEmpty ? 0 : sorted[sorted.count / 2],
            p99: sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))],
            cpuPerCall: (after.cpu - before.cpu) * 1e6 / Double(calls),
            serverCPU: after.serverCPU.flatMap { a in before.serverCPU.map { (a - $0) / wall } },
            rssMB: after.maxRSSMB
        )
    }
}

/// CPU of this process (getrusage) and of the server (/proc), and wall time.
struct Usage {
    var wall: Double
    var cpu: Double
    var serverCPU: Double?
    var maxRSSMB: Double

    static func now(serverPID: Int32?) -> Usage {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu =
            Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        var server: Double?
        if let pid = serverPID, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
                server = (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
            }
        }
        let wall = Double(DispatchTime.now().uptimeNanoseconds) / 1e9
        return Usage(wall: wall, cpu: cpu, serverCPU: server, maxRSSMB: Double(usage.ru_maxrss) / 1024)
    }
}

/// `grpc-pool serve` in a separate process.
final class ServerProcess: Sendable {
    let pid: Int32
    let port: Int
    private let process: ChildProcess

    private init(process: ChildProcess, port: Int) {
        self.process = process
        self.pid = process.pid
        self.port = port
    }

    static func start(maxConcurrentStreams: Int? = nil, delayMs: Int = 0) async throws -> ServerProcess {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        let process = try ChildProcess(
            executable,
            ["serve", "--port", "0", "--delay-ms", "\(delayMs)"]
                + (maxConcurrentStreams.map { ["--max-concurrent-streams", "\($0)"] } ?? []),
            output: .capture
        )
        var line = ""
        for await first in process.lines() {
            line = first
            break
        }
        guard let colon = line.lastIndex(of: ":"),
            let port = Int(line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines))
        else {
            await process.terminate()
            throw ValidationError("the server did not report its port: \(line)")
        }
        return ServerProcess(process: process, port: port)
    }

    /// Asks the server to stop (SIGTERM) without waiting for it.
    func stop() {
        self.process.send(SIGTERM)
    }
}
