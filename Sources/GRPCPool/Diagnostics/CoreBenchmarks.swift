package import GRPCCore
internal import GRPCPoolCoreBridge

/// The C core below the pool, for the command line's benchmarks and resource checks: the one
/// place where `grpc-pool` reaches past the pool's API (package access, not API).
///
/// - ``CoreBenchChannel``: a plain core channel, no pool — the benchmark's rows (d) and, with
///   ``CoreBenchChannel/loop(method:payload:concurrency:duration:calls:)``, the ceiling (e).
/// - ``CoreDiagnostics``: the core objects alive now, and the wait for the core's runtime to end.
package final class CoreBenchChannel: Sendable {
    private let channel: CoreChannel

    /// A channel to `target` (`host:port`), accepting responses of up to `maxReceiveMessageSize`.
    package init(target: String, maxReceiveMessageSize: Int? = nil) throws {
        var options = ChannelOptions()
        options.maxReceiveMessageSize = maxReceiveMessageSize
        self.channel = try CoreChannel(target: target, options: options)
    }

    /// One unary call as one batch of six ops; the response message.
    package func unary(method: String, request: [UInt8]) async throws(RPCError) -> [UInt8] {
        try await self.channel.unary(method: method, request: request).message
    }

    /// `concurrency` chains of unary calls started from the poller thread itself, for
    /// `duration` or until `calls` have started: the latency of each, and how many failed.
    package func loop(
        method: String,
        payload: [UInt8],
        concurrency: Int,
        duration: Duration,
        calls: Int = .max
    ) async -> (latencies: [Duration], failures: Int) {
        await CoreBenchLoop.run(
            channel: self.channel,
            method: method,
            payload: payload,
            concurrency: concurrency,
            duration: duration,
            calls: calls
        )
    }

    package func close() {
        self.channel.close()
    }
}

/// What the C core holds now.
package enum CoreDiagnostics {
    /// Live channels, calls, byte buffers and runtimes, as one line.
    package static var liveObjects: String { "\(LiveObjects.snapshot())" }

    /// Returns once no runtime is left (the core has shut down).
    package static func waitUntilCoreShutDown() async {
        await LiveObjects.runtimes.waitUntilZero()
    }
}

extension ConnectionPool {
    /// A unary call on raw bytes on a picked connection, with `timeout` as its deadline; the
    /// response message.
    package func unary(method: String, request: [UInt8], timeout: Duration?) async throws(RPCError) -> [UInt8] {
        try await self.unary(method: method, request: request, options: CoreCallOptions(timeout: timeout)).message
    }
}

/// The package's lock acquisitions, counted in a `make bench-allocs` build only (the bridge's
/// `LockCount`, for the command line and the benchmarks).
package enum LockCounts {
    package static var isCounting: Bool { LockCount.isCounting }
    package static var total: Int { LockCount.total }
    package static func bySite() -> [(site: String, count: Int)] { LockCount.bySite() }
    package static func reset() { LockCount.reset() }
}
