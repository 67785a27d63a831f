import GRPCPool
import GRPCPoolCoreBridge

/// A ``PoolClock`` that moves only when the test says: the pool's timers (sizing readings,
/// health checks, recovery attempts, ejections) fire at ``advance(by:)``, never on their own.
///
/// It starts at the real clock's now, so that instants the pool takes from the real clock
/// (latencies, a connection's start) stay comparable with its own.
/// Its state sits behind `Locked` (a pthread mutex, which Thread Sanitizer sees).
final class ManualClock: PoolClock {
    private struct Sleeper {
        let deadline: ContinuousClock.Instant
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct Watcher {
        let deadline: ContinuousClock.Instant
        let continuation: CheckedContinuation<Void, Never>
    }

    private struct State {
        var now: ContinuousClock.Instant
        var nextID = 0
        var sleepers: [Int: Sleeper] = [:]
        /// Sleeps cancelled before they were registered.
        var cancelled: Set<Int> = []
        var watchers: [Int: Watcher] = [:]
    }

    private let state: Locked<State>

    init(start: ContinuousClock.Instant = .now) {
        self.state = Locked(State(now: start))
    }

    var now: ContinuousClock.Instant { self.state.withLock { $0.now } }

    func sleep(until deadline: ContinuousClock.Instant) async throws {
        try Task.checkCancellation()
        let id = self.state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (outcome, woken) = self.state.withLock { state -> (Result<Void, any Error>?, [Watcher]) in
                    if state.cancelled.remove(id) != nil { return (.failure(CancellationError()), []) }
                    if deadline <= state.now { return (.success(()), []) }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    let matching = state.watchers.filter { $0.value.deadline == deadline }
                    for key in matching.keys { state.watchers[key] = nil }
                    return (nil, Array(matching.values))
                }
                if let outcome { continuation.resume(with: outcome) }
                for watcher in woken { watcher.continuation.resume() }
            }
        } onCancel: {
            let sleeper = self.state.withLock { state -> Sleeper? in
                if let sleeper = state.sleepers.removeValue(forKey: id) { return sleeper }
                state.cancelled.insert(id)
                return nil
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock on by `duration` and wakes every sleep whose deadline it reached.
    func advance(by duration: Duration) {
        let due = self.state.withLock { state -> [Sleeper] in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.value.deadline <= now }
            for key in due.keys { state.sleepers[key] = nil }
            return due.values.sorted { $0.deadline < $1.deadline }
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Whether a sleep until exactly `deadline` is waiting, or starts within `timeLimit` (real
    /// time): how a test knows that a timer it means to fire has been set.
    func waitForSleep(until deadline: ContinuousClock.Instant, timeLimit: Duration = .seconds(30)) async -> Bool {
        let id = self.state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        let waiter = Task {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let now = self.state.withLock { state -> Bool in
                        if state.cancelled.remove(id) != nil { return true }
                        if state.sleepers.values.contains(where: { $0.deadline == deadline }) { return true }
                        state.watchers[id] = Watcher(deadline: deadline, continuation: continuation)
                        return false
                    }
                    if now { continuation.resume() }
                }
            } onCancel: {
                let watcher = self.state.withLock { state -> Watcher? in
                    if let watcher = state.watchers.removeValue(forKey: id) { return watcher }
                    state.cancelled.insert(id)
                    return nil
                }
                watcher?.continuation.resume()
            }
            return self.state.withLock { state in state.sleepers.values.contains { $0.deadline == deadline } }
        }
        return await value(of: waiter, timeLimit: timeLimit)
    }

    /// Waits for the sleep that is due one `interval` from now, then moves the clock to it.
    ///
    /// - Returns: whether that sleep was there to wake.
    func advanceToSleep(in interval: Duration, timeLimit: Duration = .seconds(30)) async -> Bool {
        let deadline = self.now.advanced(by: interval)
        guard await self.waitForSleep(until: deadline, timeLimit: timeLimit) else { return false }
        self.advance(by: interval)
        return true
    }
}
