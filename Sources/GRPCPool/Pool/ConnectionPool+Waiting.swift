internal import GRPCCore
internal import GRPCPoolCoreBridge

/// A connection for a call or a lease: picked at once, or waited for, or refused.
extension ConnectionPool {
    /// A connection for one call or lease, under the policy for when none is healthy.
    ///
    /// When no pickable connection has room (`streamCapacity`), the call waits in the pool's
    /// queue, oldest first, for up to `timeout` (on the pool's clock), among at most
    /// `maxQueuedCalls` others that found every connection full; past that bound it fails at once.
    ///
    /// The connection comes with a slot counted for the caller: start the call in it, or hold it
    /// as a lease (``PooledConnection/unlease()`` gives it back).
    ///
    /// - Parameter timeout: how long to wait (the call's deadline); by default
    ///   `connectionWaitTimeout`.
    /// - Throws: `RPCError` `.unavailable` (fail fast), `.failedPrecondition` (shutting down),
    ///   `.resourceExhausted` (the queue is full), `.deadlineExceeded` (waited until the deadline)
    ///   or `.cancelled`.
    func connection(waitingAtMost timeout: Duration?) async throws(RPCError) -> PooledConnection.CallSlot {
        var delay: CallDispatcher.Delay?
        switch await self.dispatcher.pick(timeLimit: timeout ?? self.config.connectionWaitTimeout, delay: &delay) {
        case .run(let index):
            return PooledConnection.CallSlot(self.connections[index], delay: delay)
        case .refused(.shutDown):
            throw Refusal.shuttingDown(self.serviceID)
        case .refused(.saturated):
            throw self.saturated()
        case .refused(.noneHealthy):
            throw self.noneHealthy()
        case .cancelled:
            self.dispatcher.rejected()
            if Task.isCancelled {
                throw RPCError(code: .cancelled, message: "cancelled while waiting for a connection")
            }
            throw self.expired()
        }
    }

    /// DEADLINE_EXCEEDED for a call that waited in vain: saturation or no healthy connection.
    func expired() -> RPCError {
        let full = self.dispatcher.state.withLock { $0.machine.connections.contains(where: \.isHealthy) }
        if full {
            return RPCError(
                code: .deadlineExceeded,
                message: "no connection to '\(self.serviceID)' had room before the deadline"
                    + " (\(self.connections.count) × \(self.config.callCapacity) calls, streamCapacity \(self.config.streamCapacity))",
                cause: self.saturation
            )
        }
        var error = self.noneHealthy()
        error.code = .deadlineExceeded
        return error
    }

    /// Calls waiting for a connection now: for one to become healthy, or for room.
    package var waitingCalls: Int { self.dispatcher.waiting.all }

    /// ``connection(waitingAtMost:)`` as a `Result`.
    func connectionResult(waitingAtMost timeout: Duration?) async -> Result<PooledConnection.CallSlot, RPCError> {
        do {
            return .success(try await self.connection(waitingAtMost: timeout))
        } catch {
            return .failure(error)
        }
    }

    func saturated() -> RPCError {
        RPCError(
            code: .resourceExhausted,
            message: "the pool for '\(self.serviceID)' is saturated: every connection carries"
                + " \(self.config.callCapacity) calls (streamCapacity \(self.config.streamCapacity)) and maxQueuedCalls"
                + " (\(self.config.maxQueuedCalls)) calls are waiting",
            cause: self.saturation
        )
    }

    /// The cause of both saturation errors: shed at once, or no room before the deadline.
    var saturation: GRPCPoolError {
        GRPCPoolError(code: .saturated, message: "pool '\(self.serviceID)' is saturated")
    }

    /// UNAVAILABLE naming the endpoints and the latest connection error, which is also the
    /// cause of its `GRPCPoolError`.
    func noneHealthy() -> RPCError {
        let lastFailure = self.connections.compactMap(\.lastFailure).max { $0.at < $1.at }?.error
        let endpoints = Set(self.connections.map { $0.endpoint.description }).sorted().joined(separator: ", ")
        return RPCError(
            code: .unavailable,
            message: "no healthy connection to '\(self.serviceID)' (\(endpoints))"
                + (lastFailure.map { "; last error: \($0)" } ?? ""),
            cause: GRPCPoolError(
                code: .noHealthyConnection,
                message: "no healthy connection to '\(self.serviceID)'",
                cause: lastFailure
            )
        )
    }
}
