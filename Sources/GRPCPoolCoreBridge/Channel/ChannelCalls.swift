private import Synchronization

/// The calls on one channel — live (the core still holds their `grpc_call`) and reserved
/// (picked for this channel, not created yet) — and the tasks waiting for them all to end.
///
/// The counts are atomics (every call passes here twice); the lock guards only the waiters, and
/// is taken on the hot path only when a count reaches zero while someone waits.
final class ChannelCalls: Sendable {
    private let live = Atomic<Int>(0)
    private let reserved = Atomic<Int>(0)
    private let waiters = Locked(Waiters())

    private struct Waiters: Sendable {
        var queue = WaiterQueue<Void>()
    }
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
        self.waiters.withLock { $0.queue.removeAll() }.resume(returning: ())
    }

    /// Returns once no call is live or reserved (at once if none is), or when the task is
    /// cancelled (the caller bounds the wait).
    func waitUntilIdle() async {
        self.waiting.add(1, ordering: .sequentiallyConsistent)
        defer { self.waiting.subtract(1, ordering: .sequentiallyConsistent) }
        // Checked under the lock, after registering as waiting: a count that reached zero before
        // this point is seen here, one that reaches it later finds the waiter.
        await self.waiters.wait(in: \.queue, until: { _ in self.total == 0 ? () : nil }, cancelled: ())
    }
}
