internal import GRPCPoolCoreBridge
private import Synchronization

/// Wakes tasks waiting for "something changed" (a connection's health or load), with a
/// generation number so that a change between looking and waiting is never missed.
///
/// Signalled on every call's end, so a signal with nobody waiting touches only two atomics; the
/// lock guards the waiters.
final class ChangeSignal: Sendable {
    private let currentGeneration = Atomic<Int>(0)
    private let waiting = Atomic<Int>(0)
    private let state = Locked(State())

    private struct State {
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
    }

    var generation: Int { self.currentGeneration.load(ordering: .sequentiallyConsistent) }

    func signal() {
        self.currentGeneration.wrappingAdd(1, ordering: .sequentiallyConsistent)
        guard self.waiting.load(ordering: .sequentiallyConsistent) > 0 else { return }
        let waiters = self.state.withLock { state in
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the generation has moved past `observed`.
    ///
    /// - Throws: `CancellationError` when the task is cancelled.
    func wait(after observed: Int) async throws {
        self.waiting.add(1, ordering: .sequentiallyConsistent)
        defer { self.waiting.subtract(1, ordering: .sequentiallyConsistent) }
        let id = self.state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                // Checked under the lock, after counting as waiting: a signal before this point
                // moved the generation, one after it finds the waiter.
                let resumeNow = self.state.withLock { state -> Bool in
                    if self.generation != observed || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
            try Task.checkCancellation()
        } onCancel: {
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(throwing: CancellationError())
        }
    }
}
