import Foundation
import GRPCPoolCoreBridge

/// The end of a child process, awaited without holding a thread.
///
/// `Process.waitUntilExit()` spins a run loop on the calling thread until Foundation marks the
/// process ended; called on the cooperative pool's threads it can wait forever (two such waits at
/// once held both of this machine's threads). The termination handler, set before `run()`, cannot
/// miss an early end.
final class ProcessEnd: Sendable {
    private struct State {
        var ended = false
        var nextWaiter = 0
        var waiters: [Int: CheckedContinuation<Bool, Never>] = [:]
        var expired: Set<Int> = []
    }

    private let state = Locked(State())

    /// Watches `process`, which must not have been started yet.
    init(_ process: Process) {
        process.terminationHandler = { [state] _ in
            let waiters = state.withLock { state in
                state.ended = true
                defer { state.waiters = [:] }
                return state.waiters.values
            }
            for waiter in waiters { waiter.resume(returning: true) }
        }
    }

    var hasEnded: Bool { self.state.withLock { $0.ended } }

    /// Waits until the process has ended (`true`), or `timeLimit` has passed (`false`).
    @discardableResult
    func wait(timeLimit: Duration = .seconds(10)) async -> Bool {
        let id = self.state.withLock { state in
            defer { state.nextWaiter += 1 }
            return state.nextWaiter
        }
        let timer = Task { [state] in
            try await Task.sleep(for: timeLimit)
            let waiter = state.withLock { state in
                guard let waiter = state.waiters.removeValue(forKey: id) else {
                    state.expired.insert(id)
                    return nil as CheckedContinuation<Bool, Never>?
                }
                return waiter
            }
            waiter?.resume(returning: false)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            let now = self.state.withLock { state -> Bool? in
                if state.ended { return true }
                if state.expired.contains(id) { return false }
                state.waiters[id] = continuation
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }
}
