internal import GRPCPoolCoreBridge

/// The clock the pool's own timers run on: dynamic sizing's readings, the periodic health check,
/// the keepalive RPC, recovery attempts, the end of an ejection, a connection's maximum age, and
/// the gauges. RPC deadlines and the C core's own timers (keepalive pings, its reconnection
/// backoff, connect timeouts) run on real time whatever the pool's clock is.
///
/// Pools run on ``ContinuousPoolClock``; a test can pass a clock it moves itself (through
/// `PoolManager`'s package initializer), so that those timers fire when it says.
package protocol PoolClock: Sendable {
    /// The current instant.
    var now: ContinuousClock.Instant { get }

    /// Returns at `deadline` (at once if it has passed).
    ///
    /// - Throws: `CancellationError` when the task is cancelled first.
    func sleep(until deadline: ContinuousClock.Instant) async throws
}

extension PoolClock {
    /// Returns after `duration` on this clock.
    func sleep(for duration: Duration) async throws {
        try await self.sleep(until: self.now.advanced(by: duration))
    }
}

/// The real clock: `ContinuousClock`, which keeps counting while the machine sleeps.
package struct ContinuousPoolClock: PoolClock {
    package init() {}

    package var now: ContinuousClock.Instant { .now }

    package func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await Task.sleep(until: deadline, clock: .continuous)
    }
}

extension PoolClock where Self == ContinuousPoolClock {
    /// The real clock.
    package static var continuous: ContinuousPoolClock { ContinuousPoolClock() }
}

extension PoolClock {
    /// Runs `operation`, cancelling it when `limit` passes on this clock first, and returns what
    /// it returns: a cancelled operation answers with what it has, or with its own answer to
    /// cancellation. The pool's one race between work and a timer.
    func withTimeLimit<Result: Sendable>(
        _ limit: Duration,
        _ operation: @escaping @Sendable () async -> Result
    ) async -> Result {
        await withTaskGroup(of: Result?.self) { group in
            group.addTask { await operation() }
            group.addTask {
                try? await self.sleep(for: limit)
                return nil
            }
            while let next = await group.next() {
                // The operation's answer, or the time limit (or the task's cancellation): then the
                // operation is cancelled, and its answer comes next.
                if let result = next {
                    group.cancelAll()
                    return result
                }
                group.cancelAll()
            }
            fatalError("a time limit's operation ended without an answer")
        }
    }
}

extension PoolClock {
    /// Closes `channel` once its calls have finished, or after `limit` on this clock (the calls
    /// left are then ended by the core).
    func drainAndClose(_ channel: CoreChannel, within limit: Duration) async {
        await self.withTimeLimit(limit) { await channel.waitUntilIdle() }
        channel.close()
    }

    /// Connects `channel`, waiting at most `limit` on this clock: the state it reached.
    func connect(_ channel: CoreChannel, within limit: Duration) async -> ChannelConnectivity {
        await self.withTimeLimit(limit) { await channel.connect() }
    }
}
