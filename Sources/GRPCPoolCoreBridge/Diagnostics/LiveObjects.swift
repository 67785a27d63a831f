private import Synchronization

/// Counters of live core objects, for leak tests and diagnostics.
///
/// Each counter goes up when this package creates the object and down when it releases it, so
/// after a workload has finished every one of them must be back where it started.
package enum LiveObjects {
    /// `grpc_call`s that have not been unreferenced yet.
    package static let calls = LiveCounter()
    /// `grpc_channel`s that have not been destroyed yet.
    package static let channels = LiveCounter()
    /// `grpc_byte_buffer`s created or received that have not been destroyed yet.
    package static let byteBuffers = LiveCounter()
    /// Runtimes (one `grpc_init` each) whose poller has not finished `grpc_shutdown` yet.
    package static let runtimes = LiveCounter()
    /// Completion-queue poller threads that are running.
    package static let pollerThreads = LiveCounter()

    /// A snapshot of every counter.
    package static func snapshot() -> Snapshot {
        Snapshot(
            calls: calls.value,
            channels: channels.value,
            byteBuffers: byteBuffers.value,
            runtimes: runtimes.value,
            pollerThreads: pollerThreads.value
        )
    }

    package struct Snapshot: Sendable, Hashable, CustomStringConvertible {
        package var calls: Int
        package var channels: Int
        package var byteBuffers: Int
        package var runtimes: Int
        package var pollerThreads: Int

        package var description: String {
            "calls=\(calls) channels=\(channels) byteBuffers=\(byteBuffers) runtimes=\(runtimes) pollers=\(pollerThreads)"
        }
    }
}

/// One atomic count of live objects.
package final class LiveCounter: Sendable {
    private let count = Atomic<Int>(0)
    /// Tasks in ``waitUntilZero()``, and how many; the count lets a decrement skip the lock.
    private let waiters = Locked(Waiters())
    private let waiting = Atomic<Int>(0)

    private struct Waiters: Sendable {
        var queue = WaiterQueue<Void>()
    }

    package var value: Int { self.count.load(ordering: .relaxed) }

    func increment() { self.count.add(1, ordering: .relaxed) }

    func decrement() {
        // Sequentially consistent, with the waiter's own two steps: either the decrement sees
        // the waiter, or the waiter sees the zero.
        guard self.count.subtract(1, ordering: .sequentiallyConsistent).newValue == 0,
            self.waiting.load(ordering: .sequentiallyConsistent) > 0
        else { return }
        self.waiters.withLock { $0.queue.removeAll() }.resume(returning: ())
    }

    /// Returns once the count is zero (now, or at a later decrement, which wakes it), or when the
    /// task is cancelled.
    package func waitUntilZero() async {
        self.waiting.add(1, ordering: .sequentiallyConsistent)
        defer { self.waiting.subtract(1, ordering: .sequentiallyConsistent) }
        await self.waiters.wait(
            in: \.queue,
            until: { _ in self.count.load(ordering: .sequentiallyConsistent) == 0 ? () : nil },
            cancelled: ()
        )
    }
}
