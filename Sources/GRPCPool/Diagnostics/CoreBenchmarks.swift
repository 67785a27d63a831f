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

    /// One server-streaming call through the core layer alone (no GRPCCore, no pool): `request`
    /// and the half-close in the start batch, then every response message; how many arrived.
    package func serverStream(method: String, request: [UInt8], metadata: Metadata) async throws(RPCError) -> Int {
        let call = try CoreCall.create(on: self.channel, method: method, options: CoreCallOptions())
        try call.start(metadata: metadata, message: request, closeSend: true)
        var received = 0
        if await call.receive() != nil {
            received += 1
            while await call.receiveNext() != nil { received += 1 }
        }
        try Self.check(await call.status())
        return received
    }

    /// One client-streaming call through the core layer alone: `count` copies of `message`,
    /// the half-close, the one response message.
    package func clientStream(method: String, message: [UInt8], count: Int) async throws -> [UInt8] {
        try await self.channel.withCall(method: method) { call in
            for _ in 0..<count { await call.send(message) }
            call.closeSend()
            let reply = await call.receive()
            try Self.check(await call.status())
            return reply ?? []
        }
    }

    /// One bidirectional stream through the core layer alone: `rounds` times `message` sent
    /// and its echo awaited, then the half-close.
    package func pingPong(method: String, message: [UInt8], rounds: Int) async throws -> Int {
        try await self.channel.withCall(method: method) { call in
            var echoed = 0
            for round in 0..<rounds {
                await call.send(message)
                guard await (round == 0 ? call.receive() : call.receiveNext()) != nil else { break }
                echoed += 1
            }
            call.closeSend()
            _ = await call.receiveNext()
            try Self.check(await call.status())
            return echoed
        }
    }

    private static func check(_ status: CallStatus) throws(RPCError) {
        if let error = status.error { throw error }
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
