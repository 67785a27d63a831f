private import Synchronization

/// The calls on one channel — live (the core still holds their `grpc_call`) and reserved
/// (picked for this channel, not created yet) — and the tasks waiting for them all to end.
///
/// The counts are atomics (every call passes here twice); the lock guards only the waiters, and
/// is taken on the hot path only when a count reaches zero while someone waits.
final class ChannelCalls: Sendable {
    private let live = Atomic<Int>(0)
    private let reserved = Atomic<Int>(0)
    private let waiters = Locked<[CheckedContinuation<Void, Never>]>([])
    private let waiting = Atomic<Int>(0)

    var liveCount: Int { self.live.load(ordering: .sequentiallyConsistent) }
    var total: Int {
        self.live.load(ordering: .sequentiallyConsistent) + self.reserved.load(ordering: .sequentiallyConsistent)
    }

    func created() { self.live.add(1, ordering: .sequentiallyConsistent) }
    func reserve() { self.reserved.add(1, ordering: .sequentiallyConsistent) }

    func released() {
        self.live.subtract(1, ordering: .sequentiallyConsistent)
        self.wakeIfIdle()
    }

    func unreserve() {
        self.reserved.subtract(1, ordering: .sequentiallyConsistent)
        self.wakeIfIdle()
    }

    private func wakeIfIdle() {
        guard self.waiting.load(ordering: .sequentiallyConsistent) > 0, self.total == 0 else { return }
        let woken = self.waiters.withLock { waiters in
            defer { waiters = [] }
            return waiters
        }
        for waiter in woken { waiter.resume() }
    }

    /// Returns once no call is live or reserved (at once if none is). Not cancellable: the caller
    /// bounds the wait (``CoreChannel/drainAndClose(timeLimit:)`` races it against a timer and
    /// then wakes it with ``wakeAll()``).
    func waitUntilIdle() async {
        self.waiting.add(1, ordering: .sequentiallyConsistent)
        defer { self.waiting.subtract(1, ordering: .sequentiallyConsistent) }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let idle = self.waiters.withLock { waiters -> Bool in
                // Checked under the lock, after registering as waiting: a count that reached zero
                // before this point is seen here, one that reaches it later finds the waiter.
                if self.total == 0 { return true }
                waiters.append(continuation)
                return false
            }
            if idle { continuation.resume() }
        }
    }

    /// Wakes every waiter, idle or not.
    func wakeAll() {
        let woken = self.waiters.withLock { waiters in
            defer { waiters = [] }
            return waiters
        }
        for waiter in woken { waiter.resume() }
    }
}
