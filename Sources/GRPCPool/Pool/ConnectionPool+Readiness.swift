extension ConnectionPool {
    /// Waits until `minimum` connections are healthy (by default, every connection of the
    /// working set), for at most `timeLimit`: a readiness gate for startup, before the first
    /// calls or before reporting ready to an orchestrator.
    ///
    /// Woken by each change of a connection's health, not polled. The pool must be running
    /// (``PoolManager/run()``).
    ///
    /// - Returns: whether enough connections were healthy in time; `false` also when the task
    ///   is cancelled.
    public func waitUntilHealthy(connections minimum: Int? = nil, timeLimit: Duration) async -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeLimit)
        let enough: @Sendable () -> Bool = { [connections] in
            let needed = minimum ?? max(connections.filter(\.isActive).count, 1)
            return connections.filter(\.isHealthy).count >= needed
        }
        return await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                try? await Task.sleep(until: deadline, clock: .continuous)
                return enough()
            }
            group.addTask {
                while true {
                    let observed = self.changes.generation
                    if enough() { return true }
                    do { try await self.changes.wait(after: observed) } catch { return enough() }
                }
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}
