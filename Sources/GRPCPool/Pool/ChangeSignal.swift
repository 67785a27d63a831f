internal import GRPCPoolCoreBridge
private import Synchronization

/// Wakes tasks waiting for a condition on state that changes often (a connection's health or
/// load, the pool's lifecycle), with a generation number so that a change between looking and
/// waiting is never missed. Readiness, drain and lookup waits use it; calls waiting for a
/// connection do not (the pool's machine hands each its connection).
///
/// Signalled on every call's end, so a signal with nobody waiting touches only two atomics; the
/// lock guards the waiters.
final class ChangeSignal: Sendable {
    private let currentGeneration = Atomic<Int>(0)
    private let waiting = Atomic<Int>(0)
    private let state = Locked(State())

    private struct State: Sendable {
        var waiters = WaiterQueue<Bool>()
    }

    var generation: Int { self.currentGeneration.load(ordering: .sequentiallyConsistent) }

    func signal() {
        self.currentGeneration.wrappingAdd(1, ordering: .sequentiallyConsistent)
        guard self.waiting.load(ordering: .sequentiallyConsistent) > 0 else { return }
        self.state.withLock { $0.waiters.removeAll() }.resume(returning: true)
    }

    /// Returns once the generation has moved past `observed`: `true`; `false` when the task is
    /// cancelled first.
    func wait(after observed: Int) async -> Bool {
        // Counted as waiting before looking: a signal after the look finds the waiter.
        self.waiting.add(1, ordering: .sequentiallyConsistent)
        defer { self.waiting.subtract(1, ordering: .sequentiallyConsistent) }
        return await self.state.wait(
            in: \.waiters,
            until: { _ in self.generation != observed ? true : nil },
            cancelled: false
        )
    }

    /// Returns once `condition` holds, looked at now and after each signal: `true`; `false` when
    /// the task is cancelled first.
    func wait(until condition: () -> Bool) async -> Bool {
        while true {
            let observed = self.generation
            if condition() { return true }
            guard await self.wait(after: observed) else { return false }
        }
    }
}
