import ArgumentParser
import DemoServices
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCPool
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

    @Flag(help: "Only the defaults-against-tuned rows, against the NIO and the grpcio server.")
    var onlyDefaults = false

    @Flag(
        help:
            "Only the streaming rows (bidi at c = 1/16/64, server and client streaming, 1 MiB bidi) and the unary rows they are compared with."
    )
    var onlyStreams = false

    @Flag(
        help:
            "Only the observability rows: the pool stub on the defaults plain, with a Prometheus metrics backend, and with that and swift-otel's tracer."
    )
    var onlyObservability = false

    @Option(help: "The Python with grpcio, for the grpcio (C-core) server's rows.")
    var grpcioPython = ".build-venv/bin/python"

    @Option(help: "The grpcio server script.")
    var grpcioServer = "Scripts/core_server.py"

    @Option(
        help: """
            External mode: the workload, unary (one message of --payload bytes), bidi (10 ping-pongs), \
            server-stream or client-stream (10,000 messages of --payload bytes down or up).
            """
    )
    var workload: TargetWorkload = .unary

    enum TargetWorkload: String, ExpressibleByArgument, CaseIterable, Sendable {
        case unary
        case bidi
        case serverStream = "server-stream"
        case clientStream = "client-stream"
    }

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

    @Option(
        help: """
            External mode: make exactly this many calls of --call-client one after another (after 100 \
            to warm up) and exit: for counting what a call costs (strace -c -f). A build that counts \
            locks (make bench-allocs) then prints the locks per call by the line that takes them.
            """
    )
    var countCalls: Int?

    @Option(help: "The client of --count-calls: core-channel (e), pool-raw (a′), pool-stub (a), or bidi (a's stream).")
    var callClient: CountedClient = .poolStub

    enum CountedClient: String, ExpressibleByArgument, CaseIterable, Sendable {
        case coreChannel = "core-channel"
        case poolRaw = "pool-raw"
        case poolStub = "pool-stub"
        case bidi
    }

    func run() async throws {
        if let target = self.target, let count = self.countCalls {
            return try await Self.countedCalls(count, of: self.callClient, target: target)
        }
        if let target = self.target { return try await self.runAgainst(target) }

        let server = try await ServerProcess.start()
        defer { server.stop() }
        let endpoint = PoolManager.Endpoint(host: "127.0.0.1", port: server.port)
        let clients = try await BenchClients(
            endpoint: endpoint,
            connections: self.connections,
            settings: BenchSettings.allCases
        )
        defer { clients.shutdown() }
        if self.memory {
            return try await Self.memoryRun(
                clients: clients,
                client: self.memoryClient,
                total: self.memoryCalls,
                json: self.json
            )
        }
        let session = BenchSession(options: self, server: server, clients: clients)
        session.say(
            "server: pid \(server.pid) on 127.0.0.1:\(server.port); \(self.duration) s per row after \(self.warmup) s warm-up"
        )
        session.say(Measure.Row.header)
        if self.onlyDefaults {
            try await self.defaultsSections(session)
            return try session.report()
        }
        if self.onlyObservability {
            try await session.observabilityRows()
            return try session.report()
        }
        if self.onlyStreams {
            for level in [1, 16, 64] { try await session.unaryRows(concurrency: level) }
            try await session.streamingRows()
            return try session.report()
        }
        if !self.onlyPool && !self.onlyOutcomes {
            for level in self.levels { try await session.unaryRows(concurrency: level) }
            try await session.largeAndStreamingRows()
            try await session.streamingRows()
            try await self.defaultsSections(session)
            try await session.observabilityRows()
        }
        if !self.onlyOutcomes {
            for tasks in [1, 64] { try await session.acquireRelease(tasks: tasks) }
            try await session.scalingRows()
        }
        let fast = [try await ServerProcess.start(), try await ServerProcess.start()]
        let slow = try await ServerProcess.start(delayMs: 100)
        defer { for server in fast + [slow] { server.stop() } }
        if !self.onlyOutcomes { try await session.slowEndpointRows(fast: fast, slow: slow) }
        try await session.adaptiveRows(fast: fast, slow: slow)
        try session.report()
    }

    /// The defaults section against the NIO echo server, then against a grpcio server (the C
    /// core with its default settings), when its Python is there.
    private func defaultsSections(_ session: BenchSession) async throws {
        try await session.defaultsRows(server: "nio", clients: session.clients, serverPID: session.server.pid)
        guard FileManager.default.isExecutableFile(atPath: self.grpcioPython) else {
            session.say("(no grpcio server rows: \(self.grpcioPython) is missing; `make pydeps` installs it)")
            return
        }
        let grpcio = try await ServerProcess.grpcio(python: self.grpcioPython, script: self.grpcioServer)
        defer { grpcio.stop() }
        let clients = try await BenchClients(
            endpoint: .init(host: "127.0.0.1", port: grpcio.port),
            connections: self.connections,
            settings: BenchSettings.allCases
        )
        defer { clients.shutdown() }
        try await session.defaultsRows(server: "grpcio", clients: clients, serverPID: grpcio.pid)
    }

    /// External mode: the pool against `target` on the tuned settings and on the defaults, and
    /// grpc-swift-2's NIO client on the same two; one JSON line per row.
    private func runAgainst(_ target: String) async throws {
        let endpoint = try Endpoints.parse(target)
        let clients = try await BenchClients(
            endpoint: endpoint,
            connections: self.connections,
            nioClients: 1,
            settings: [.tuned, .defaults]
        )
        defer { clients.shutdown() }
        let payload = [UInt8](repeating: 7, count: self.payload)
        for (client, settings) in [
            ("grpcpool", BenchSettings.tuned), ("grpcpool", .defaults), ("nio", .tuned), ("nio", .defaults),
        ] {
            let call: @Sendable () async throws -> Void
            switch (client, self.workload) {
            case ("grpcpool", .unary): call = { try await clients.poolStub(payload, settings: settings) }
            case ("grpcpool", .bidi): call = { try await clients.poolPingPong(payload, settings: settings) }
            case (_, .unary): call = { try await clients.nio(payload, settings: settings) }
            case (_, .bidi): call = { try await clients.nioPingPong(payload, settings: settings) }
            case ("grpcpool", .serverStream), ("grpcpool", .clientStream):
                call = clients.streamCall(
                    self.workload,
                    clients.poolClient(settings),
                    payload,
                    settings,
                    retries: false
                )
            case (_, .serverStream), (_, .clientStream):
                call = clients.streamCall(self.workload, clients.nioClient(settings), payload, settings, retries: true)
            }
            _ = try await Measure.run(
                concurrency: self.concurrency,
                duration: .seconds(self.warmup),
                serverPID: nil,
                call
            )
            let row = try await Measure.run(
                concurrency: self.concurrency,
                duration: .seconds(self.duration),
                serverPID: nil,
                call
            )
            let object: [String: Any] = [
                "client": client, "settings": settings.rawValue, "workload": self.workload.rawValue,
                "connections": self.connections, "concurrency": self.concurrency, "payload": self.payload,
                "rpcs": row.calls, "failures": row.failures, "qps": row.qps, "p50_us": row.p50, "p99_us": row.p99,
                "cpu_us_per_rpc": row.cpuPerCall,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }
}

extension Bench {
    /// `count` calls of `client`, one after another, after 100 to warm up; the pool on the
    /// README's defaults, one connection. What strace counts in `make bench-allocs`.
    static func countedCalls(_ count: Int, of client: CountedClient, target: String) async throws {
        let clients = try await BenchClients(
            endpoint: try Endpoints.parse(target),
            connections: 1,
            nioClients: 0,
            settings: [.defaults]
        )
        defer { clients.shutdown() }
        let payload = [UInt8](repeating: 7, count: 32)
        let call: @Sendable () async throws -> Void
        switch client {
        case .coreChannel: call = { try await clients.coreChannel(payload) }
        case .poolRaw: call = { try await clients.poolRaw(payload) }
        case .poolStub: call = { try await clients.poolStub(payload, settings: .defaults) }
        case .bidi: call = { try await clients.poolPingPong(payload, settings: .defaults) }
        }
        for _ in 0..<100 { try await call() }
        LockCounts.reset()
        for _ in 0..<count { try await call() }
        // A build that counts locks (make bench-allocs) lists them per call, by the line that
        // takes them; the pool's background work rounds away.
        guard LockCounts.isCounting else { return }
        let sites = LockCounts.bySite().filter { $0.count * 2 >= count }.sorted { $0.site < $1.site }
        let total = sites.reduce(0) { $0 + $1.count }
        print("locks per call: \(String(format: "%.1f", Double(total) / Double(count)))")
        for (site, taken) in sites {
            print(String(format: "  %5.1f  ", Double(taken) / Double(count)) + site)
        }
    }

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
                let (_, failures) = await clients.core.loop(
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
            writeLine("live core objects: \(CoreDiagnostics.liveObjects)")
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
        let (latencies, failures) = await clients.core.loop(
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

    /// A grpcio server (`Scripts/core_server.py`: the C core with its default settings), which
    /// prints `PORT n` once it listens and exits when its standard input closes.
    static func grpcio(python: String, script: String) async throws -> ServerProcess {
        let process = try ChildProcess(python, [script, "--port", "0"], output: .capture, input: true)
        var line = ""
        for await first in process.lines() {
            line = first
            break
        }
        guard line.hasPrefix("PORT "), let port = Int(line.dropFirst(5).prefix { $0.isNumber }) else {
            await process.terminate()
            throw ValidationError("the grpcio server did not report its port: \(line)")
        }
        return ServerProcess(process: process, port: port)
    }

    /// Asks the server to stop (SIGTERM) without waiting for it.
    func stop() {
        self.process.send(SIGTERM)
    }
}
