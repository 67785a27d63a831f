internal import CoreMetrics
package import GRPCCore
package import GRPCPoolCoreBridge
internal import Synchronization

/// Calls on the connection: counted, reserved, recorded in its metrics.
extension PooledConnection {
    /// Makes a unary call on raw bytes and records it.
    package func unary(
        method: String,
        request: [UInt8],
        metadata: Metadata = [:],
        options: CoreCallOptions? = nil
    ) async throws(RPCError) -> UnaryResponse {
        try await self.unary(method: method, request: request, metadata: metadata, options: options, in: self.slot())
    }

    /// The same, in a slot already counted (the pool's pick).
    func unary(
        method: String,
        request: [UInt8],
        metadata: Metadata,
        options: CoreCallOptions?,
        in slot: CallSlot
    ) async throws(RPCError) -> UnaryResponse {
        let options = options ?? self.defaultCallOptions
        let call = self.beginCall(in: slot, path: method, registered: false)
        var metadata = metadata
        call.trace?.inject(into: &metadata)
        do {
            let response = try await call.channel.unary(
                method: method,
                request: request,
                metadata: metadata,
                options: options
            )
            self.endCall(call, error: nil, sent: request.count, received: response.message.count)
            return response
        } catch {
            self.endCall(call, error: error, sent: request.count)
            throw error
        }
    }

    /// The options of a raw call that brings none: the service's timeout and compression.
    var defaultCallOptions: CoreCallOptions {
        CoreCallOptions(
            timeout: self.config.defaultCallTimeout,
            compression: self.config.callCompression,
            compressionThreshold: self.config.compressionThreshold
        )
    }

    /// A call between ``beginCall(in:)`` and ``endCall(_:error:)``: the channel it runs on
    /// (which stays open for it even if the connection swaps channels meanwhile) and its start.
    struct StartedCall {
        let channel: CoreChannel
        let start: ContinuousClock.Instant
        /// The address the connection went to when the call started: its `ClientContext`'s peer.
        let peer: String
        /// `grpc.method` of its metrics (``StandardMetrics``).
        let method: String
        /// How long its pick waited, when it had to.
        let delay: Duration?
        /// Its span, when a tracer is active.
        let trace: AttemptTrace?
    }

    /// One call's place in the connection's load (``CallDispatcher``), counted before the call
    /// starts, so that a drain (the connection leaving the working set) waits for it like a
    /// running call; the call's end (``endCall(_:error:)``) or the lease's gives it back. The
    /// pool's pick makes one; a call on a connection the caller holds takes one with ``slot()``.
    struct CallSlot {
        let connection: PooledConnection
        /// How long the pick waited for this connection, when it had to.
        let delay: CallDispatcher.Delay?

        init(_ connection: PooledConnection, delay: CallDispatcher.Delay? = nil) {
            self.connection = connection
            self.delay = delay
        }
    }

    /// A slot for a call on this connection, whether or not it is in the working set (the
    /// caller holds it: a lease, a probe of the connection itself).
    func slot() -> CallSlot {
        self.dispatcher.occupy(self.index)
        return CallSlot(self)
    }

    /// Starts attempt `attempt` of a call to `path` in `slot`. The channel is read and reserved
    /// in one step, so a channel swap cannot close it under the call. A call through the raw
    /// API (not `registered`) goes in the metrics as ``StandardMetrics/unregisteredMethod``.
    func beginCall(in slot: CallSlot, path: String, registered: Bool = true, attempt: Int = 1) -> StartedCall {
        let (channel, peer) = self.storage.withLock { state in
            state.channel.reserveCall()
            return (state.channel, state.placement.address)
        }
        let method = registered ? path : StandardMetrics.unregisteredMethod
        self.standardMetrics.attemptStarted(method: method, delay: slot.delay)
        let trace = self.trace(path: path, attempt: attempt, peer: peer, delay: slot.delay)
        return StartedCall(
            channel: channel,
            start: .now,
            peer: peer,
            method: method,
            delay: slot.delay?.duration,
            trace: trace
        )
    }

    /// The span of an attempt starting now, when a tracer is active. Not inlined: its locals
    /// (the tracer, the attempt's description) stay out of the async frames of the calls that
    /// begin an attempt, which is what an untraced call would otherwise pay for (allocations of
    /// the task's frames, `make bench-allocs`).
    @inline(never)
    private func trace(path: String, attempt: Int, peer: String, delay: CallDispatcher.Delay?) -> AttemptTrace? {
        guard let tracer = AttemptTrace.activeTracer else { return nil }
        let authority = self.storage.withLock { $0.placement.authority }
        return AttemptTrace(
            AttemptTrace.Attempt(
                path: path,
                service: self.serviceID,
                connection: self.index,
                number: attempt,
                address: peer,
                authority: authority,
                delay: delay
            ),
            tracer: tracer
        )
    }

    /// Records a finished call, which sent and received `sent` and `received` bytes of
    /// messages. Failures in a row may eject the connection (the pool's machine decides); an
    /// UNAVAILABLE failure goes to the connection's machine.
    func endCall(_ call: StartedCall, error: RPCError?, sent: Int = 0, received: Int = 0) {
        let latency = ContinuousClock.now - call.start
        call.channel.releaseCall()
        call.trace?.end(error: error)
        self.standardMetrics.attemptEnded(
            method: call.method,
            status: error.map { Status.Code($0.code) } ?? .ok,
            duration: latency + (call.delay ?? .zero),
            sent: sent,
            received: received
        )
        let eject = self.dispatcher.callEnded(on: self.index, latency: latency, error: error)
        self.instruments.latency.record(duration: latency)
        (error == nil ? self.instruments.successes : self.instruments.failures).increment()
        if let eject { self.eject(failures: eject.failures) }
        if error?.code == .unavailable {
            // The connection's channel now (the call's may be one swapped out since).
            let ready = self.channel.state() == .ready
            self.handle { $0.machine.callUnavailable(channelReady: ready) }
        }
    }

    /// A `withConnection` lease ended.
    func unlease() {
        self.dispatcher.leaseEnded(on: self.index)
    }

    /// Returns once no call or lease is left on the connection, or after `timeLimit` on the
    /// pool's clock.
    func waitUntilUnloaded(timeLimit: Duration) async {
        await self.clock.withTimeLimit(timeLimit) {
            await self.dispatcher.changes.wait { self.load == 0 }
        }
    }
}
