internal import GRPCPoolCoreBridge

/// Wakes tasks waiting for "something changed" (a connection's health or load), with a
/// generation number so that a change between looking and waiting is never missed.
final class ChangeSignal: Sendable {
    private let state = Locked(State())

    private struct State {
        var generation = 0
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Void, any Error>] = [:]
    }

    var generation: Int { self.state.withLock { $0.generation } }

    func signal() {
        let waiters = self.state.withLock { state in
            state.generation &+= 1
            defer { state.waiters = [:] }
            return state.waiters.values
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the generation has moved past `observed`.
    ///
    /// - Throws: `CancellationError` when the task is cancelled.
    func wait(after observed: Int) async throws {
        let id = self.state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.generation != observed || Task.isCancelled { return true }
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
