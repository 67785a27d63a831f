internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Synchronization

/// A connection for a call or a lease: picked at once, or waited for, or refused.
extension ConnectionPool {
    /// A connection for one call or lease, under the policy for when none is healthy.
    ///
    /// When every healthy connection is full (`streamCapacity`), the call waits for room (up to
    /// `timeout`) among at most `maxQueuedCalls` others; past that bound it fails at once.
    ///
    /// The connection comes with a slot counted for the caller (``PooledConnection/reserve()``):
    /// start the call in it, or turn it into a lease (``PooledConnection/lease(_:)``).
    ///
    /// - Parameter timeout: how long to wait (the call's deadline).
    /// - Throws: `RPCError` `.unavailable` (fail fast), `.failedPrecondition` (shutting down),
    ///   `.resourceExhausted` (the queue is full) or `.deadlineExceeded` (waited until the deadline).
    func connection(waitingAtMost timeout: Duration?) async throws(RPCError) -> PooledConnection.CallSlot {
        do {
            return try await self.pick(waitingAtMost: timeout)
        } catch {
            self.rejected.add(1, ordering: .relaxed)
            throw error
        }
    }

    func pick(waitingAtMost timeout: Duration?) async throws(RPCError) -> PooledConnection.CallSlot {
        try self.checkOpen()
        let found = self.pickHealthy()
        if case .connection(let connection) = found, let slot = connection.reserve() { return slot }
        // The queue is full already: shed now, without starting the wait's tasks.
        if case .allAtCapacity = found, self.queued.load(ordering: .relaxed) >= self.config.maxQueuedCalls {
            throw self.saturated()
        }
        if case .noneHealthy = found {
            switch self.config.whenNoneHealthy.value {
            case .failFast:
                throw self.noneHealthy()
            case .useAnyConnection:
                while true {
                    let active = self.connections.filter(\.isActive)
                    let index = self.cursor.wrappingAdd(1, ordering: .relaxed).oldValue
                    let connection = active[index % active.count]
                    if let slot = connection.reserve() { return slot }
                }
            case .waitUntilDeadline:
                break
            }
        }

        // The wait runs beside one timer for its whole length (not one per wake-up: a cancelled
        // Task.sleep holds its memory until its deadline), and whichever ends first ends the other.
        let deadline = ContinuousClock.now.advanced(by: timeout ?? self.config.connectionWaitTimeout)
        self.waiting.add(1, ordering: .relaxed)
        defer { self.waiting.subtract(1, ordering: .relaxed) }
        do {
            return try await withThrowingTaskGroup(of: PooledConnection.CallSlot?.self) { group in
                group.addTask {
                    try await Task.sleep(until: deadline, clock: .continuous)
                    return nil
                }
                group.addTask { try await self.waitForRoom(until: deadline) }
                defer { group.cancelAll() }
                while let result = try await group.next() {
                    if let slot = result { return slot }
                    // The deadline passed: the waiting loop, cancelled, throws DEADLINE_EXCEEDED
                    // (or returns the connection it reserved just before).
                    group.cancelAll()
                }
                throw RPCError(code: .internalError, message: "the wait for a connection ended without an outcome")
            }
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(code: .cancelled, message: "cancelled while waiting for a connection")
        }
    }

    /// Waits for a connection with room: counted among the queued calls while all are full (and
    /// refused past `maxQueuedCalls`), woken by every change of health or load.
    func waitForRoom(until deadline: ContinuousClock.Instant) async throws(RPCError) -> PooledConnection.CallSlot {
        var queued = false
        defer { if queued { self.queued.subtract(1, ordering: .relaxed) } }
        while true {
            let observed = self.changes.generation
            let found = self.pickHealthy()
            switch found {
            case .connection(let connection):
                // Not reserved only if it left the working set just now; look again at once.
                if let slot = connection.reserve() { return slot }
                continue
            case .allAtCapacity where !queued:
                let waiting = self.queued.wrappingAdd(1, ordering: .relaxed).newValue
                queued = true
                guard waiting <= self.config.maxQueuedCalls else { throw self.saturated() }
            case .allAtCapacity, .noneHealthy:
                break
            }
            try self.checkOpen()
            guard ContinuousClock.now < deadline else { throw self.expired(found) }
            do {
                try await self.changes.wait(after: observed)
            } catch {
                // Cancelled: by the timer at the deadline, or by the caller.
                if ContinuousClock.now >= deadline { throw self.expired(found) }
                throw RPCError(code: .cancelled, message: "cancelled while waiting for a connection")
            }
        }
    }

    /// DEADLINE_EXCEEDED for a call that waited in vain: saturation or no healthy connection.
    func expired(_ found: Pick) -> RPCError {
        if case .allAtCapacity = found {
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
    package var waitingCalls: Int { self.waiting.load(ordering: .relaxed) }

    /// ``connection(waitingAtMost:)`` as a `Result`.
    func connectionResult(waitingAtMost timeout: Duration?) async -> Result<PooledConnection.CallSlot, RPCError> {
        do {
            return .success(try await self.connection(waitingAtMost: timeout))
        } catch {
            return .failure(error)
        }
    }

    func checkOpen() throws(RPCError) {
        let open = self.state.withLock { $0.lifecycle == .open }
        guard open else { throw Refusal.shuttingDown(self.serviceID) }
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
