import Benchmark
import DemoServices
import Foundation
import GRPCCore
import GRPCPool

/// What one call costs, counted rather than timed: allocations per call (ordo-one/benchmark with
/// its malloc interposer, as grpc-swift-2 measures itself), for four rows against a server in
/// another process on loopback (`grpc-pool serve`), each a `grpc.testing.TestService` call:
///
/// - `e-core-call`, (e) the bare C-core call: one unary batch on a plain core channel, no pool,
///   no GRPCCore;
/// - `a-prime-pool-call`, (a′) the pool's own unary call: the pick, the call slot, the core call,
///   the statistics;
/// - `a-stub-call`, (a) a generated stub over `manager.client(for:)`: GRPCCore's client on the pool;
/// - `bidi-round-trip`, a bidirectional stream's message round trip through the same stub.
///
/// Each row also reports `locks`: the package's own lock acquisitions (`Locked.withLock`, counted
/// in this build only) per call, the pool's background work included (rare at these rates).
///
/// `make bench-allocs` runs them and checks the committed thresholds (Thresholds/).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.mallocCountTotal, locks],
        warmupIterations: 200,
        maxDuration: .seconds(20),
        maxIterations: 2_000,
        thresholds: [
            .mallocCountTotal: .init(absolute: [.p50: 1, .p90: 2]),
            locks: .init(absolute: [.p50: 0, .p90: 1]),
        ]
    )
    Benchmark.setup = { try await Fixture.shared.start() }
    Benchmark.teardown = { await Fixture.shared.stop() }

    Benchmark("e-core-call") { benchmark in
        let channel = Fixture.shared.core!
        try await counted(benchmark) { try await channel.unary(method: Fixture.emptyCall, request: []) }
    }
    Benchmark("a-prime-pool-call") { benchmark in
        let pool = Fixture.shared.pool
        try await counted(benchmark) { try await pool.unary(method: Fixture.emptyCall, request: [], timeout: nil) }
    }
    Benchmark("a-stub-call") { benchmark in
        let stub = Grpc_Testing_TestService.Client(wrapping: Fixture.shared.client)
        try await counted(benchmark) { try await stub.emptyCall(Grpc_Testing_Empty()) }
    }
    // One stream for every iteration, opened in setup: the harness calls this closure once per
    // iteration, so a stream opened here would count its opening and closing in every round trip.
    Benchmark("bidi-round-trip") { benchmark in
        let stream = Fixture.shared.stream!
        try await counted(benchmark) { try await stream.roundTrip() }
    }
}

/// The package's lock acquisitions per call.
let locks = BenchmarkMetric.custom("locks")

/// Runs `call` once per scaled iteration and reports the locks it took per call.
func counted<T>(_ benchmark: Benchmark, _ call: () async throws -> T) async throws {
    let before = LockCounts.total
    let calls = benchmark.scaledIterations.count
    for _ in 0..<calls {
        blackHole(try await call())
    }
    let taken = LockCounts.total - before
    benchmark.measurement(locks, taken / max(calls, 1))
}

/// The server process and the clients of one benchmark process.
final class Fixture: @unchecked Sendable {
    static let shared = Fixture()
    static let emptyCall = "/grpc.testing.TestService/EmptyCall"

    // Set once in start(), before any benchmark runs; read-only after.
    private(set) var server: ChildProcess!
    private(set) var manager: PoolManager!
    private(set) var running: Task<Void, any Error>!
    private(set) var core: CoreBenchChannel!
    /// The bidi row's stream, open from start() to stop().
    private(set) var stream: RoundTrips!
    var pool: ConnectionPool { try! self.manager.pool(for: "bench") }
    var client: GRPCClient<PooledTransport> { try! self.manager.client(for: "bench") }

    /// Starts `grpc-pool serve` (`GRPC_POOL_BINARY`, else the one built beside this executable)
    /// and connects the clients.
    func start() async throws {
        // The executable's own folder (argv[0] may be a bare name).
        let beside = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        let binary =
            ProcessInfo.processInfo.environment["GRPC_POOL_BINARY"] ?? beside.appendingPathComponent("grpc-pool").path
        let server = try ChildProcess(binary, ["serve", "--port", "0"], output: .capture)
        var line = ""
        for await first in server.lines() {
            line = first
            break
        }
        guard let colon = line.lastIndex(of: ":"), let port = Int(line[line.index(after: colon)...]) else {
            throw RPCError(code: .unavailable, message: "the server did not report its port: \(line)")
        }
        self.server = server
        // The README's defaults (gzip above its threshold, retries), one connection.
        let manager = try PoolManager(
            services: ["bench": .init(host: "127.0.0.1", port: port, poolSize: 1)]
        )
        self.manager = manager
        self.running = Task { try await manager.run() }
        guard await manager.waitUntilHealthy(timeLimit: .seconds(10)) else {
            throw RPCError(code: .unavailable, message: "the pool did not connect to 127.0.0.1:\(port)")
        }
        self.core = try CoreBenchChannel(target: "127.0.0.1:\(port)")
        _ = try await self.core.unary(method: Self.emptyCall, request: [])
        self.stream = try await self.openStream()
        _ = try await self.stream.roundTrip()
    }

    func stop() async {
        await self.stream?.close()
        self.core?.close()
        self.manager?.beginGracefulShutdown()
        _ = await self.running?.result
        self.server?.send(SIGKILL)
    }

    /// A bidirectional stream held open, one message round trip at a time.
    func openStream() async throws -> RoundTrips {
        let trips = RoundTrips()
        let stub = Grpc_Testing_TestService.Client(wrapping: self.client)
        trips.task = Task {
            let request = StreamingClientRequest(of: Grpc_Testing_StreamingOutputCallRequest.self) { writer in
                for await message in trips.requests { try await writer.write(message) }
            }
            try await stub.fullDuplexCall(request: request) { response in
                for try await message in response.messages { trips.responses.continuation.yield(message) }
                trips.responses.continuation.finish()
            }
        }
        return trips
    }
}

/// One open `FullDuplexCall`: each round trip writes a request for one 32-byte response and
/// waits for it.
final class RoundTrips: @unchecked Sendable {
    // `task` is set once, before the first round trip; the iterator is used by one task at a time.
    let (requests, requestSink) = AsyncStream.makeStream(of: Grpc_Testing_StreamingOutputCallRequest.self)
    let responses = AsyncStream.makeStream(of: Grpc_Testing_StreamingOutputCallResponse.self)
    var task: Task<Void, any Error>?
    private lazy var iterator = self.responses.stream.makeAsyncIterator()
    private let request = Grpc_Testing_StreamingOutputCallRequest.with {
        $0.responseParameters = [.with { $0.size = 32 }]
    }

    func roundTrip() async throws -> Grpc_Testing_StreamingOutputCallResponse {
        self.requestSink.yield(self.request)
        guard let response = await self.iterator.next() else {
            throw RPCError(code: .unavailable, message: "the stream ended")
        }
        return response
    }

    func close() async {
        self.requestSink.finish()
        _ = await self.task?.result
    }
}
