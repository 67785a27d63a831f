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
        let call = self.beginCall(in: slot)
        do {
            let response = try await call.channel.unary(
                method: method,
                request: request,
                metadata: metadata,
                options: options
            )
            self.endCall(call, error: nil)
            return response
        } catch {
            self.endCall(call, error: error)
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
    }

    /// One call's place in the connection's load, counted before the call starts, so that a
    /// drain (the connection leaving the working set) waits for it like a running call; the
    /// call's end (``endCall(_:error:)``) or the lease's gives it back. The pool's pick makes one
    /// with ``reserve()``; a call on a connection the caller holds takes one with ``slot()``.
    struct CallSlot {
        let connection: PooledConnection
        fileprivate init(_ connection: PooledConnection) { self.connection = connection }
    }

    /// A slot for a call the pool is handing this connection.
    ///
    /// - Returns: `nil`, counting nothing, when the connection has left the working set since
    ///   it was picked; the pool then picks again.
    func reserve() -> CallSlot? {
        self.inFlightCalls.add(1, ordering: .sequentiallyConsistent)
        guard self.active.load(ordering: .sequentiallyConsistent) else {
            self.inFlightCalls.subtract(1, ordering: .sequentiallyConsistent)
            self.onChange()
            return nil
        }
        return CallSlot(self)
    }

    /// A slot for a call on this connection, whether or not it is in the working set (the
    /// caller holds it: a lease, a probe of the connection itself).
    func slot() -> CallSlot {
        self.inFlightCalls.add(1, ordering: .relaxed)
        return CallSlot(self)
    }

    /// Turns a slot into a `withConnection` lease (the load stays the same throughout).
    func lease(_ slot: CallSlot) {
        self.activeLeases.add(1, ordering: .sequentiallyConsistent)
        self.inFlightCalls.subtract(1, ordering: .sequentiallyConsistent)
    }

    /// Starts a call in `slot`. The channel is read and reserved in one step, so a channel swap
    /// cannot close it under the call.
    func beginCall(in slot: CallSlot) -> StartedCall {
        let channel = self.storage.withLock { state in
            state.channel.reserveCall()
            return state.channel
        }
        return StartedCall(channel: channel, start: .now)
    }

    /// Records a finished call. An UNAVAILABLE failure takes the connection out of rotation if
    /// its channel is no longer ready, and asks the monitor for a check at once.
    func endCall(_ call: StartedCall, error: RPCError?) {
        let latency = ContinuousClock.now - call.start
        call.channel.releaseCall()
        self.inFlightCalls.subtract(1, ordering: .relaxed)
        let (seconds, attoseconds) = latency.components
        self.instruments.latency.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        (error == nil ? self.instruments.successes : self.instruments.failures).increment()
        self.storage.withLock { state in
            state.stats.latency.record(latency)
            if let error {
                state.stats.failures += 1
                state.stats.lastFailure = (error, "\(error.code): \(error.message)", .now)
            } else {
                state.stats.successes += 1
            }
        }
        let connectionFailure = error.map { Self.isConnectionFailure($0.code) } ?? false
        if connectionFailure {
            let streak = self.consecutiveFailures.add(1, ordering: .relaxed).newValue
            if let detector = self.outlierDetector, streak >= detector.settings.consecutiveFailures, !self.isEjected {
                detector.failureStreak(of: self)
            }
        } else {
            self.consecutiveFailures.store(0, ordering: .relaxed)
        }
        if self.config.balancing == .leastBusy {
            // A connection failure counts as a call of at least a second, so that a connection
            // that fails fast looks slow, not idle.
            let sample = connectionFailure ? max(latency, Self.failurePenalty) : latency
            self.latency.withLock { $0.record(sample) }
        }
        if error?.code == .unavailable {
            // A channel that is no longer ready leaves rotation now, not only once its
            // connectivity watch has reached the monitor: fewer calls pick a dead connection.
            if self.channel.state() != .ready { self.setHealthy(false) }
            self.checkRequests.yield()
        }
        self.onChange()
    }

    /// Tells the pool, and a drain waiting here, that the health, the load or the channel
    /// changed.
    func onChange() {
        self.changes.signal()
        self.onChangeHandler()
    }

    /// Returns once no call or lease is left on the connection, or after `timeLimit`.
    func waitUntilUnloaded(timeLimit: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while true {
                    let observed = self.changes.generation
                    if self.load == 0 { return }
                    do { try await self.changes.wait(after: observed) } catch { return }
                }
            }
            group.addTask { try? await Task.sleep(for: timeLimit) }
            await group.next()
            group.cancelAll()
        }
    }

    /// The latency a connection failure counts as, for least-busy balancing.
    static let failurePenalty = Duration.seconds(1)

    /// Codes that say something about the connection rather than about the call.
    static func isConnectionFailure(_ code: RPCError.Code) -> Bool {
        code == .unavailable || code == .deadlineExceeded
    }

    func unlease() {
        self.activeLeases.subtract(1, ordering: .relaxed)
        self.onChange()
    }
}
