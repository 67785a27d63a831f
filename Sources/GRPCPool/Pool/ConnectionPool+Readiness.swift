extension ConnectionPool {
    /// Waits until `minimum` connections are healthy (by default, every connection of the
    /// working set), for at most `timeLimit`: a readiness gate for startup, before the first
    /// calls or before reporting ready to an orchestrator.
    ///
    /// The pool must be running (``PoolManager/run()``).
    ///
    /// - Returns: whether enough connections were healthy in time; `false` also when the task
    ///   is cancelled.
    public func waitUntilHealthy(connections minimum: Int? = nil, timeLimit: Duration) async -> Bool {
        await self.waitUntil(timeLimit: timeLimit) { pool in
            let needed = minimum ?? max(pool.connections.filter(\.isActive).count, 1)
            return pool.connections.filter(\.isHealthy).count >= needed
        }
    }

    /// Waits until `condition` holds for the pool, for at most `timeLimit`: for example
    /// `pool.waitUntil(timeLimit: .seconds(5)) { $0.metrics().healthyConnections == 0 }`.
    ///
    /// `condition` is checked now and then at each change of a connection's health, load or channel
    /// (a call's end is one), not on a timer: keep it cheap. The time limit runs on the pool's
    /// clock.
    ///
    /// - Returns: whether the condition held in time; `false` also when the task is cancelled.
    public func waitUntil(
        timeLimit: Duration,
        _ condition: @escaping @Sendable (ConnectionPool) -> Bool
    ) async -> Bool {
        let held = await self.clock.withTimeLimit(timeLimit) { await self.changes.wait { condition(self) } }
        // At the time limit, one last look; cancelled, no answer.
        return held || (!Task.isCancelled && condition(self))
    }
}
