internal import DemoServices
internal import Foundation
public import GRPCCore

/// gRPC's soak interop cases (doc/interop-test-descriptions.md): `rpc_soak` sends many
/// large_unary RPCs in sequence over one channel, `channel_soak` each over a new channel. An
/// iteration fails when its RPC fails or takes longer than the acceptable latency; the case
/// fails when more iterations fail than allowed, or when the overall time runs out first.
public struct Soak: Sendable {
    public enum Kind: String, CaseIterable, Sendable {
        case rpc = "rpc_soak"
        case channel = "channel_soak"
    }

    /// `--soak_iterations`.
    public var iterations: Int
    /// `--soak_max_failures`.
    public var maxFailures: Int
    /// `--soak_per_iteration_max_acceptable_latency_ms`.
    public var maxAcceptableLatency: Duration
    /// `--soak_overall_timeout_seconds`.
    public var overallTimeout: Duration
    /// `--soak_min_time_ms_between_rpcs`.
    public var minTimeBetweenRPCs: Duration

    /// The interop client's defaults.
    public init(
        iterations: Int = 10,
        maxFailures: Int = 0,
        maxAcceptableLatency: Duration = .milliseconds(1000),
        overallTimeout: Duration = .seconds(10),
        minTimeBetweenRPCs: Duration = .zero
    ) {
        self.iterations = iterations
        self.maxFailures = maxFailures
        self.maxAcceptableLatency = maxAcceptableLatency
        self.overallTimeout = overallTimeout
        self.minTimeBetweenRPCs = minTimeBetweenRPCs
    }

    /// What a soak run did.
    public struct Outcome: Sendable {
        public var iterationsRan: Int
        public var failures: Int
        /// Latencies of the iterations, in milliseconds, sorted.
        public var latencies: [Double]
        /// Whether it passed: no more failures than allowed, every iteration run in time.
        public var passed: Bool
    }

    /// Runs the soak: iteration *i* makes one large_unary RPC with the client `client(i)` hands
    /// it (the same one each time for `rpc_soak`, a new one for `channel_soak`) and lets it go
    /// with `done` afterwards. `say` gets the lines gRPC's interop clients print: one per
    /// iteration, and the summary.
    public func run<Transport: ClientTransport>(
        serverURI: String,
        client: (_ iteration: Int) async throws -> (client: GRPCClient<Transport>, done: () async -> Void),
        say: (String) -> Void
    ) async -> Outcome {
        let clock = ContinuousClock()
        let start = clock.now
        var outcome = Outcome(iterationsRan: 0, failures: 0, latencies: [], passed: false)
        for iteration in 0..<self.iterations {
            let remaining = self.overallTimeout - (clock.now - start)
            guard remaining > .zero else { break }
            let began = clock.now
            let failure = await self.iteration(iteration, remaining: remaining, client: client)
            let elapsed = clock.now - began
            let milliseconds = elapsed.milliseconds
            outcome.iterationsRan += 1
            outcome.latencies.append(milliseconds)
            let line =
                "soak iteration: \(iteration) elapsed_ms: \(Int(milliseconds)) peer: \(serverURI) server_uri: \(serverURI)"
            if let failure {
                outcome.failures += 1
                say("\(line) failed: \(failure)")
            } else if elapsed > self.maxAcceptableLatency {
                outcome.failures += 1
                say("\(line) exceeds max acceptable latency: \(Int(self.maxAcceptableLatency.milliseconds))")
            } else {
                say("\(line) succeeded")
            }
            let pause = self.minTimeBetweenRPCs - elapsed
            if pause > .zero { try? await Task.sleep(for: pause) }
        }
        outcome.latencies.sort()
        outcome.passed = outcome.failures <= self.maxFailures && outcome.iterationsRan == self.iterations
        self.summarize(outcome, serverURI: serverURI, say: say)
        return outcome
    }

    /// One iteration: `nil` when its RPC succeeded with the expected payload, else why not.
    private func iteration<Transport: ClientTransport>(
        _ iteration: Int,
        remaining: Duration,
        client: (_ iteration: Int) async throws -> (client: GRPCClient<Transport>, done: () async -> Void)
    ) async -> String? {
        let grpcClient: GRPCClient<Transport>
        let done: () async -> Void
        do {
            (grpcClient, done) = try await client(iteration)
        } catch {
            return "\(error)"
        }
        var options = CallOptions.defaults
        options.timeout = remaining
        let failure: String?
        do {
            let response = try await Grpc_Testing_TestService.Client(wrapping: grpcClient).unaryCall(
                InteropCase.largeRequest(),
                options: options
            )
            let size = response.payload.body.count
            failure = size == 314_159 ? nil : "payload of \(size) bytes, expected 314159"
        } catch {
            failure = "\(error)"
        }
        await done()
        return failure
    }

    private func summarize(_ outcome: Outcome, serverURI: String, say: (String) -> Void) {
        func percentile(_ p: Double) -> Double {
            guard !outcome.latencies.isEmpty else { return 0 }
            return outcome.latencies[min(outcome.latencies.count - 1, Int(Double(outcome.latencies.count) * p))]
        }
        if outcome.iterationsRan < self.iterations {
            say(
                "(server_uri: \(serverURI)) soak test consumed all \(Int(self.overallTimeout.milliseconds / 1000)) seconds"
                    + " of time and quit early, only having ran \(outcome.iterationsRan) out of desired"
                    + " \(self.iterations) iterations."
            )
        }
        if outcome.failures > self.maxFailures {
            say(
                "(server_uri: \(serverURI)) soak test total failures: \(outcome.failures) exceeds max failures"
                    + " threshold: \(self.maxFailures)."
            )
        }
        say(
            "(server_uri: \(serverURI)) soak test ran: \(outcome.iterationsRan) / \(self.iterations) iterations."
                + " total failures: \(outcome.failures). latencies in ms: p50: \(String(format: "%.1f", percentile(0.5)))"
                + " p90: \(String(format: "%.1f", percentile(0.9))) p100: \(String(format: "%.1f", percentile(1)))"
        )
    }
}

extension Duration {
    fileprivate var milliseconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}
