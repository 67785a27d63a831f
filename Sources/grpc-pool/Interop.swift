import ArgumentParser
import DemoServices
import GRPCCore
import GRPCPool
import InteropCases
import Logging

/// Runs gRPC's interop cases through the pooled transport against a TestService.
struct Interop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run gRPC interop test cases through the pool against a grpc.testing.TestService.",
        discussion: """
            The soak cases run only when named: rpc_soak (many large_unary RPCs through one pool) and \
            channel_soak (each through a new pool), with gRPC's interop client flags.
            """
    )

    @Option(help: "HOST:PORT of a server implementing grpc.testing.TestService; omitted: a local one is started.")
    var target: String?

    @Option(
        name: [.customLong("case"), .customLong("test_case")],
        help: "Run only this case (e.g. large_unary, rpc_soak, channel_soak)."
    )
    var testCase: String?

    @Option(help: "Connections in the pool.")
    var poolSize: Int = 2

    @Option(name: .customLong("soak_iterations"), help: "Soak: iterations.")
    var soakIterations: Int = 10

    @Option(name: .customLong("soak_max_failures"), help: "Soak: failed iterations allowed.")
    var soakMaxFailures: Int = 0

    @Option(
        name: .customLong("soak_per_iteration_max_acceptable_latency_ms"),
        help: "Soak: an iteration slower than this fails."
    )
    var soakMaxLatencyMs: Int = 1000

    @Option(name: .customLong("soak_overall_timeout_seconds"), help: "Soak: the time for all iterations.")
    var soakOverallTimeoutSeconds: Int = 10

    @Option(
        name: .customLong("soak_min_time_ms_between_rpcs"),
        help: "Soak: the least time from one RPC's start to the next."
    )
    var soakMinTimeMsBetweenRPCs: Int = 0

    @Flag(help: "Show the pool's own log lines.")
    var verbose = false

    func run() async throws {
        var local: DemoServer?
        let target: String
        if let given = self.target {
            target = given
        } else {
            let server = DemoServer()
            try await server.start()
            local = server
            target = server.target
        }
        if let name = self.testCase, let kind = Soak.Kind(rawValue: name) {
            let passed = try await self.soak(kind, target: target)
            await local?.stop()
            if !passed { throw ExitCode.failure }
            return
        }
        let cases: [InteropCase]
        if let name = self.testCase {
            guard let testCase = InteropCase(rawValue: name) else {
                let known = InteropCase.allCases.map(\.name) + Soak.Kind.allCases.map(\.rawValue)
                throw ValidationError("unknown case '\(name)'; known: \(known.joined(separator: ", "))")
            }
            cases = [testCase]
        } else {
            cases = InteropCase.allCases
        }
        var failures = 0
        try await self.withManager(target: target) { manager in
            let client = try manager.client(for: "interop")
            for testCase in cases {
                let clock = ContinuousClock()
                let start = clock.now
                do {
                    try await testCase.run(using: client)
                    print("PASS  \(testCase.name)  (\(clock.now - start))")
                } catch {
                    failures += 1
                    print("FAIL  \(testCase.name): \(error)")
                }
            }
        }
        await local?.stop()
        print("\(cases.count - failures) passed, \(failures) failed")
        if failures > 0 { throw ExitCode.failure }
    }

    /// A soak case: `rpc_soak` through one pool, `channel_soak` through a new pool each iteration.
    private func soak(_ kind: Soak.Kind, target: String) async throws -> Bool {
        let soak = Soak(
            iterations: self.soakIterations,
            maxFailures: self.soakMaxFailures,
            maxAcceptableLatency: .milliseconds(self.soakMaxLatencyMs),
            overallTimeout: .seconds(self.soakOverallTimeoutSeconds),
            minTimeBetweenRPCs: .milliseconds(self.soakMinTimeMsBetweenRPCs)
        )
        let say: (String) -> Void = { writeLine($0) }
        let outcome: Soak.Outcome
        switch kind {
        case .rpc:
            outcome = try await self.withManager(target: target) { manager in
                let client = try manager.client(for: "interop")
                return await soak.run(serverURI: target, client: { _ in (client, {}) }, say: say)
            }
        case .channel:
            outcome = await soak.run(
                serverURI: target,
                client: { _ in try await self.startedManager(target: target) },
                say: say
            )
        }
        return outcome.passed
    }

    /// Runs `body` with a running pool manager for `target`, and shuts it down afterwards.
    private func withManager<Result: Sendable>(
        target: String,
        _ body: (PoolManager) async throws -> Result
    ) async throws -> Result {
        let manager = try self.manager(target: target)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await manager.run() }
            defer { manager.beginGracefulShutdown() }
            return try await body(manager)
        }
    }

    /// A pool of its own, running, for one iteration of channel_soak: its client, and how to end it.
    private func startedManager(
        target: String
    ) async throws -> (client: GRPCClient<PooledTransport>, done: () async -> Void) {
        let manager = try self.manager(target: target)
        let running = Task { try await manager.run() }
        return (
            try manager.client(for: "interop"),
            {
                manager.beginGracefulShutdown()
                _ = await running.result
            }
        )
    }

    private func manager(target: String) throws -> PoolManager {
        let endpoint = try Endpoints.parse(target)
        var config = PoolManager.ServiceConfig(endpoints: [endpoint], poolSize: self.poolSize)
        config.timeout = .seconds(10)
        return try PoolManager(services: ["interop": config], logger: .cli(verbose: self.verbose))
    }
}
