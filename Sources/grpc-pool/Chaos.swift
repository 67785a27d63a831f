import ArgumentParser
import DemoServices
import Foundation
import GRPCCore
import GRPCPool
import Logging
import NIOConcurrencyHelpers
import Synchronization

/// Chaos under load: endpoints killed and restarted at random while many callers call through the
/// pool; then the invariants are checked and the run passes or fails.
struct Chaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Kill and restart endpoints at random under load, then check that nothing was lost.",
        discussion: """
            Starts --endpoints echo servers in this process and one pool over them, runs --callers \
            loops of unary calls through a stub on the pool for --duration seconds (longer, until \
            --min-faults kill/restart cycles happened), killing a random server every 0.2–1 s and \
            restarting it 0.2–1.2 s later. Checks: no hang; every call issued ended exactly once \
            (succeeded + failed = issued, counted here); the pool's metrics agree (its successful \
            calls equal ours, its failed attempts and rejections cover our failures); every failure \
            is UNAVAILABLE or DEADLINE_EXCEEDED and names an endpoint; after shutdown the open file \
            descriptors and threads are back to where they were before the pool existed. Exits 1 \
            when an invariant does not hold.
            """
    )

    @Option(help: "Seconds of load (at least).")
    var duration: Double = 60

    @Option(help: "Concurrent callers.")
    var callers: Int = 64

    @Option(help: "Echo servers behind the pool.")
    var endpoints: Int = 3

    @Option(help: "Kill/restart cycles the run must contain; it goes on past --duration until it has them.")
    var minFaults: Int = 10

    @Option(help: "Number of the fault schedule, to replay one (random when not given; printed either way).")
    var schedule: UInt64?

    @Option(
        help: ArgumentHelp(
            "Make the servers answer this many echoes wrongly (checks that the run fails).",
            visibility: .hidden
        )
    )
    var corruptReplies = 0

    @Flag(help: "Print one JSON object instead of the summary line.")
    var json = false

    @Flag(help: "Show the pool's own log lines.")
    var verbose = false

    func validate() throws {
        guard self.duration > 0 else { throw ValidationError("--duration must be positive") }
        guard self.callers >= 1 else { throw ValidationError("--callers must be at least 1") }
        guard self.endpoints >= 1 else { throw ValidationError("--endpoints must be at least 1") }
        guard self.minFaults >= 0 else { throw ValidationError("--min-faults must not be negative") }
    }

    func run() async throws {
        let schedule = self.schedule ?? UInt64.random(in: 0...UInt64(UInt32.max))
        let say: @Sendable (String) -> Void = { [json] line in if !json { writeLine(line) } }
        let servers = (0..<self.endpoints).map { _ in DemoServer() }
        for server in servers { try await server.start() }
        // The baseline: servers up, no pool; the process's one-time machinery already made:
        // Dispatch's timers (an epoll, an eventfd and a timerfd, on the first sleep) and the C
        // core's (an epoll and an eventfd that libgrpc keeps after its first `grpc_init`). So
        // one call on a plain channel, then wait until the core has shut down again.
        try await Self.warmUpCore(target: servers[0].target)
        if self.corruptReplies > 0 { servers[0].corruptNextReplies(self.corruptReplies) }
        let exits = ThreadExitWatcher()
        let baseline = Resources.Baseline()

        let outcome = try await self.load(servers: servers, schedule: schedule, say: say)
        let (counts, poolMetrics, kills, restarts, elapsed) = (
            outcome.counts, outcome.pool, outcome.kills, outcome.restarts, outcome.elapsed
        )
        let (after, leaks) = await baseline.leaks(waitingFor: exits)
        let violations = outcome.violations + leaks
        for server in servers { await server.stop() }

        let passed = violations.isEmpty
        let failures = counts.failuresByCode.sorted { $0.key < $1.key }
        if self.json {
            let object: [String: Any] = [
                "passed": passed, "schedule": schedule, "duration_s": elapsed.seconds, "callers": self.callers,
                "endpoints": self.endpoints, "kills": kills, "restarts": restarts,
                "issued": counts.issued, "succeeded": counts.succeeded, "failed": counts.failed,
                "failures": Dictionary(uniqueKeysWithValues: failures),
                "pool": [
                    "successful": poolMetrics.successfulRequests, "failed": poolMetrics.failedRequests,
                    "rejected": poolMetrics.rejectedRequests, "reconnects": poolMetrics.reconnects,
                ],
                "fds_before": baseline.fds, "fds_after": after.fds, "threads_before": baseline.threads,
                "threads_after": after.threads, "violations": violations,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            writeLine(String(decoding: data, as: UTF8.self))
        } else {
            for violation in violations { writeLine("  violation: \(violation)") }
            let byCode = failures.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            writeLine(
                String(format: "chaos %@: %.1f s, ", passed ? "PASS" : "FAIL", elapsed.seconds)
                    + "\(self.callers) callers, \(self.endpoints) endpoints, \(kills) kills / \(restarts) restarts, "
                    + "schedule \(schedule): issued \(counts.issued) = \(counts.succeeded) ok + \(counts.failed) failed"
                    + (byCode.isEmpty ? "" : " (\(byCode))")
                    + "; pool: \(poolMetrics.successfulRequests) ok, \(poolMetrics.failedRequests) failed attempts, "
                    + "\(poolMetrics.rejectedRequests) rejected, \(poolMetrics.reconnects) reconnects; "
                    + "fds \(baseline.fds)→\(after.fds), threads \(baseline.threads)→\(after.threads)"
            )
        }
        if !passed { throw ExitCode(1) }
    }

    private static func warmUpCore(target: String) async throws {
        do {
            let channel = try CoreBenchChannel(target: target)
            _ = try await channel.unary(method: BenchClients.unaryPath, request: [1])
            channel.close()
        }
        _ = await Resources.coreShutDown(within: .seconds(15))
    }

    /// What the load phase saw.
    struct LoadOutcome {
        var counts: ChaosTally.Counts
        var pool: PoolMetrics
        var kills: Int
        var restarts: Int
        var elapsed: Duration
        var violations: [String]
    }

    /// Runs the pool under load and faults, shuts it down, and checks the calls and the metrics.
    /// The manager, pool and client live only here, so that afterwards nothing holds the C core.
    private func load(
        servers: [DemoServer],
        schedule: UInt64,
        say: @escaping @Sendable (String) -> Void
    ) async throws -> LoadOutcome {
        let targets = servers.map(\.target)
        var config = PoolManager.ServiceConfig(
            endpoints: targets.map { PoolManager.Endpoint(parsing: $0)! },
            poolSize: 2 * self.endpoints,
            retryDelay: .milliseconds(100),
            timeout: .seconds(2)
        )
        config.maxRetryDelay = .milliseconds(500)
        config.healthCheck.interval = .milliseconds(500)
        config.healthCheck.timeout = .seconds(1)
        let manager = try PoolManager(services: ["echo": config], logger: .cli(verbose: self.verbose))
        let pool = try manager.pool(for: "echo")
        let client = try manager.client(for: "echo")
        let running = Task { try await manager.run() }
        say("chaos: \(self.callers) callers, \(targets.joined(separator: ", ")), schedule \(schedule)")

        let tally = ChaosTally(targets: targets)
        let stop = StopSignal()
        let clock = ContinuousClock()
        let start = clock.now
        let callers = Task { await Self.call(client, callers: self.callers, tally: tally, until: stop) }

        let (kills, restarts) = await self.faults(
            servers: servers,
            schedule: schedule,
            tally: tally,
            since: start,
            say: say
        )
        // Every server is back; let the pool recover under load for a moment, then stop calling.
        try await Task.sleep(for: .seconds(1))
        stop.set()
        let elapsed = clock.now - start

        var violations: [String] = []
        // Calls have a 2 s deadline: all callers end well within 30 s, or something hangs.
        if await !Resources.finishes(callers, within: .seconds(30)) {
            violations.append(
                "hang: callers still running 30 s after the load stopped (\(tally.snapshot.open) calls open)"
            )
        }
        let counts = tally.snapshot
        let poolMetrics = pool.metrics()
        manager.beginGracefulShutdown()
        if await !Resources.finishes(running, within: .seconds(30)) {
            violations.append("hang: the pool manager did not shut down within 30 s")
        }

        violations += Self.check(counts, against: poolMetrics)
        if kills < self.minFaults { violations.append("only \(kills) faults") }
        return LoadOutcome(
            counts: counts,
            pool: poolMetrics,
            kills: kills,
            restarts: restarts,
            elapsed: elapsed,
            violations: violations
        )
    }

    /// `callers` loops of unary echo calls through `client` until `stop`, each outcome counted
    /// in `tally`; a reply that is not the request is a DATA_LOSS failure naming what came back.
    private static func call(
        _ client: GRPCClient<PooledTransport>,
        callers: Int,
        tally: ChaosTally,
        until stop: StopSignal
    ) async {
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<callers {
                group.addTask {
                    let payload = [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: 32)
                    while !stop.isSet {
                        tally.issued()
                        do {
                            let reply = try await client.unary(
                                request: ClientRequest(message: payload),
                                descriptor: BenchClients.descriptor,
                                serializer: RawBytesSerializer(),
                                deserializer: RawBytesDeserializer(),
                                options: .defaults
                            ) { try $0.message }
                            tally.ended(
                                reply == payload
                                    ? nil
                                    : RPCError(
                                        code: .dataLoss,
                                        message:
                                            "wrong echo: sent \(payload.count) × \(index), got \(reply.count) bytes: \(reply.prefix(40))"
                                    )
                            )
                        } catch {
                            tally.ended(error)
                        }
                    }
                }
            }
        }
    }

    /// The faults: kills a random running server every 0.2–1 s and restarts it 0.2–1.2 s later,
    /// for `duration` and until `minFaults` kills; drawn from `schedule`, so that a run replays.
    /// The kills, and the restarts that worked.
    private func faults(
        servers: [DemoServer],
        schedule: UInt64,
        tally: ChaosTally,
        since start: ContinuousClock.Instant,
        say: @escaping @Sendable (String) -> Void
    ) async -> (kills: Int, restarts: Int) {
        let clock = ContinuousClock()
        var random = SplitMix64(state: schedule)
        var kills = 0
        let restarts = SharedCounter()
        await withTaskGroup(of: Void.self) { group in
            let total = Duration.milliseconds(Int(self.duration * 1000))
            while clock.now - start < total || kills < self.minFaults {
                try? await Task.sleep(for: .milliseconds(Int.random(in: 200...1000, using: &random)))
                let up = servers.indices.filter { servers[$0].isRunning }
                guard let victim = up.randomElement(using: &random) else { continue }
                await servers[victim].stop()
                kills += 1
                let downtime = Duration.milliseconds(Int.random(in: 200...1200, using: &random))
                group.addTask {
                    try? await Task.sleep(for: downtime)
                    // start() itself waits out a port still held by the stopped listener; a
                    // restart that fails anyway is missing from the restarts reported.
                    if (try? await servers[victim].start()) != nil { restarts.increment() }
                }
                say(
                    String(
                        format: "  %6.1f s  killed %@ (%d)  calls %d",
                        (clock.now - start).seconds,
                        servers[victim].target,
                        kills,
                        tally.snapshot.issued
                    )
                )
            }
        }
        return (kills, restarts.value)
    }

    /// What the callers counted against what the pool's metrics say: every call ended once, and
    /// the two agree.
    private static func check(_ counts: ChaosTally.Counts, against poolMetrics: PoolMetrics) -> [String] {
        var violations: [String] = []
        if counts.succeeded + counts.failed != counts.issued {
            violations.append(
                "calls: \(counts.issued) issued but \(counts.succeeded) succeeded + \(counts.failed) failed"
            )
        }
        if poolMetrics.successfulRequests != counts.succeeded {
            violations.append(
                "metrics: the pool counted \(poolMetrics.successfulRequests) successes, the callers \(counts.succeeded)"
            )
        }
        if poolMetrics.failedRequests + poolMetrics.rejectedRequests < counts.failed {
            violations.append(
                "metrics: \(counts.failed) failed calls but the pool saw only \(poolMetrics.failedRequests) failed attempts"
                    + " + \(poolMetrics.rejectedRequests) rejections"
            )
        }
        if poolMetrics.inFlight != 0 { violations.append("metrics: \(poolMetrics.inFlight) calls still in flight") }
        violations += counts.unexpected
        if counts.succeeded == 0 { violations.append("no call succeeded") }
        return violations
    }
}

/// The callers' own count of outcomes, independent of the pool's metrics.
final class ChaosTally: Sendable {
    struct Counts {
        var issued = 0
        var succeeded = 0
        var failed = 0
        var failuresByCode: [String: Int] = [:]
        /// Failures that break the rules (kept to the first ten).
        var unexpected: [String] = []
        var open: Int { self.issued - self.succeeded - self.failed }
    }

    private let targets: [String]
    private let counts = NIOLockedValueBox(Counts())

    init(targets: [String]) {
        self.targets = targets
    }

    var snapshot: Counts { self.counts.withLockedValue { $0 } }

    func issued() {
        self.counts.withLockedValue { $0.issued += 1 }
    }

    /// Records how a call ended: `nil` for success.
    func ended(_ error: (any Error)?) {
        guard let error else {
            self.counts.withLockedValue { $0.succeeded += 1 }
            return
        }
        var problem: String?
        let code: String
        if let error = error as? RPCError {
            code = "\(error.code)"
            if error.code != .unavailable && error.code != .deadlineExceeded {
                problem = "failure with \(error.code): \(error.message)"
            } else if !self.targets.contains(where: { error.message.contains($0) }) {
                problem = "failure not naming an endpoint: \(error.code): \(error.message)"
            }
        } else {
            code = "non-RPCError"
            problem = "failure that is not an RPCError: \(error)"
        }
        self.counts.withLockedValue { counts in
            counts.failed += 1
            counts.failuresByCode[code, default: 0] += 1
            if let problem, counts.unexpected.count < 10 { counts.unexpected.append(problem) }
        }
    }
}

/// What a process holds (Linux `/proc/self`).
enum Resources {
    /// What the process held before the load: compared with what it holds once the core has
    /// retired after it.
    struct Baseline {
        let fds = Resources.openFileDescriptors()
        let threads = Resources.threads()
        let threadNames = Resources.threadNames()
        let fdTargets = Resources.fileDescriptorTargets()

        /// Waits until the core's runtime has shut down and every thread started since the
        /// baseline has exited (the core's executor lingers two idle seconds), for at most 20 s;
        /// then counts again. The violations: descriptors or threads beyond the baseline.
        func leaks(waitingFor exits: ThreadExitWatcher) async -> (after: (fds: Int, threads: Int), [String]) {
            _ = await Resources.coreShutDown(within: .seconds(20))
            let started = Resources.threadNames().subtracting(self.threadNames)
            let counted = started.filter { !$0.hasSuffix("-qos") }.compactMap { Int32($0.prefix { $0 != ":" }) }
            _ = await exits.exit(of: counted, within: .seconds(20))
            let after = (fds: Resources.openFileDescriptors(), threads: Resources.threads())
            var violations: [String] = []
            if after.fds > self.fds {
                let extra = Resources.fileDescriptorTargets().subtracting(self.fdTargets)
                violations.append(
                    "file descriptors: \(self.fds) before, \(after.fds) after shutdown; new: \(extra.sorted())"
                )
            }
            if after.threads > self.threads {
                let extra = Resources.threadNames().subtracting(self.threadNames)
                violations.append(
                    "threads: \(self.threads) before, \(after.threads) after shutdown; new: \(extra.sorted()); core objects: \(CoreDiagnostics.liveObjects)"
                )
            }
            return (after, violations)
        }
    }

    /// Whether the C core's runtime has shut down (no `grpc_init` left) within `limit`.
    static func coreShutDown(within limit: Duration) async -> Bool {
        await Self.finishes(Task { await CoreDiagnostics.waitUntilCoreShutDown() }, within: limit)
    }

    static func openFileDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    /// Threads of this process, less the workers of Dispatch's global queues (`com.apple.root.*`,
    /// which Linux shows by their last 15 characters, e.g. `oot.default-qos`): Swift's
    /// cooperative pool runs on them, and Dispatch starts and retires them at its own pace, so
    /// their number after a load says nothing about what the pool left behind.
    static func threads() -> Int {
        self.threadNames().count { !$0.hasSuffix("-qos") }
    }

    /// `id:name` of every thread.
    static func threadNames() -> Set<String> {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return Set(
            tasks.map { id in
                let name = (try? String(contentsOfFile: "/proc/self/task/\(id)/comm", encoding: .utf8)) ?? "?"
                return "\(id):\(name.trimmingCharacters(in: .whitespacesAndNewlines))"
            }
        )
    }

    /// `fd→target` of every open descriptor; TCP sockets as `local>remote state` (hex, as in
    /// `/proc/net/tcp`).
    static func fileDescriptorTargets() -> Set<String> {
        var sockets: [String: String] = [:]
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = (try? String(contentsOfFile: table, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n").dropFirst() {
                let fields = line.split(separator: " ")
                guard fields.count > 9 else { continue }
                sockets["socket:[\(fields[9])]"] = "tcp \(fields[1])>\(fields[2]) st \(fields[3])"
            }
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return Set(
            fds.map { fd in
                let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(fd)")) ?? "?"
                return "\(fd)→" + (sockets[target] ?? target)
            }
        )
    }

    /// Whether `task` ends within `limit` (it is left running when it does not).
    static func finishes<T: Sendable>(_ task: Task<T, Never>, within limit: Duration) async -> Bool {
        await Self.finishes(within: limit) { _ = await task.value }
    }

    static func finishes<T: Sendable>(_ task: Task<T, any Error>, within limit: Duration) async -> Bool {
        await Self.finishes(within: limit) { _ = await task.result }
    }

    private static func finishes(within limit: Duration, _ wait: @escaping @Sendable () async -> Void) async -> Bool {
        // Not a task group: it would wait for a wait that never ends.
        final class Pending: Sendable {
            let continuation = NIOLockedValueBox<CheckedContinuation<Bool, Never>?>(nil)
        }
        let pending = Pending()
        return await withCheckedContinuation { continuation in
            pending.continuation.withLockedValue { $0 = continuation }
            let resume: @Sendable (Bool) -> Void = { finished in
                pending.continuation.withLockedValue { $0.take() }?.resume(returning: finished)
            }
            Task {
                await wait()
                resume(true)
            }
            Task {
                try? await Task.sleep(for: limit)
                resume(false)
            }
        }
    }
}

/// A count shared by tasks.
final class SharedCounter: Sendable {
    private let count = Atomic(0)
    /// Adds one; returns the new count.
    @discardableResult
    func increment() -> Int { self.count.add(1, ordering: .relaxed).newValue }
    var value: Int { self.count.load(ordering: .relaxed) }
    func store(_ value: Int) { self.count.store(value, ordering: .relaxed) }
}
