internal import CGRPCCore
private import Foundation
private import Synchronization

/// The process-wide gRPC core runtime: one `grpc_init`, one completion queue and the named
/// poller thread that drains it.
///
/// Every object that owns core resources (a ``CoreChannel``, a ``CoreCall``) holds a strong
/// reference to the runtime it was created on, so the runtime outlives all of them:
///
/// - the completion queue is shut down only when the last such object is gone, which is why a
///   batch can never be started on a queue that is shutting down (the core aborts the process
///   when that happens, c-core-primer §1);
/// - `grpc_shutdown` runs after the poller has left `grpc_completion_queue_next` and destroyed
///   the queue, so the core tears down only once nothing of ours is alive.
///
/// ``shared()`` hands out the live runtime, or starts a new one when the previous one has gone.
/// The registry keeps the current runtime for a short grace period after its last user let go
/// (the poller looks once a second; two idle looks in a row retire it), so that closing one pool
/// and opening the next does not tear the core down and start it again — `grpc_init` waits for a
/// `grpc_shutdown` in progress, and that wait must not fall on a caller's thread.
///
/// The poller only resumes continuations and yields to streams; it never runs user code and
/// never blocks except inside `grpc_completion_queue_next`.
package final class CoreRuntime: Sendable {
    /// The completion queue every call and connectivity watch of this runtime uses.
    let completionQueue: CompletionQueue

    /// A sequence number, unique in the process, for diagnostics.
    package let generation: Int

    private static let current = Locked<Registry>(Registry())
    private static let generations = Atomic<Int>(0)

    private init() {
        grpc_init()
        let generation = Self.generations.wrappingAdd(1, ordering: .relaxed).newValue
        self.generation = generation
        self.completionQueue = CompletionQueue(name: "grpc-pool-cq-\(generation)") {
            CoreRuntime.idleTick(generation: generation)
        }
        LiveObjects.runtimes.increment()
    }

    deinit {
        // The last owner is gone: no batch can be started any more. The poller drains what is left,
        // destroys the queue, and calls `grpc_shutdown` on its own thread. `deinit` may run on the
        // poller itself (the last reference dropped inside a completion), so it must not join it.
        self.completionQueue.shutdown()
    }

    /// The runtime that is alive now, or a new one.
    package static func shared() -> CoreRuntime {
        Self.current.withLock { registry in
            registry.idleTicks = 0
            if let runtime = registry.runtime {
                return runtime
            }
            let runtime = CoreRuntime()
            registry.runtime = runtime
            return runtime
        }
    }

    /// Called by the poller about once a second while nothing completes: retires the runtime
    /// after two looks in a row found the registry to be its only owner.
    private static func idleTick(generation: Int) {
        let retired: CoreRuntime? = Self.current.withLock { registry in
            guard registry.runtime?.generation == generation else { return nil }
            // Unique: no channel or call holds it, so nobody can hand out a new reference.
            guard isKnownUniquelyReferenced(&registry.runtime) else {
                registry.idleTicks = 0
                return nil
            }
            registry.idleTicks += 1
            guard registry.idleTicks >= 2 else { return nil }
            defer {
                registry.runtime = nil
                registry.idleTicks = 0
            }
            return registry.runtime
        }
        _ = retired  // released here, outside the lock: its deinit starts the queue's shutdown
    }

    /// Whether the gRPC core is initialised in this process (`grpc_is_initialized`).
    package static var isCoreInitialized: Bool {
        grpc_is_initialized() != 0
    }
}

private struct Registry: Sendable {
    var runtime: CoreRuntime?
    var idleTicks = 0
}

/// A `grpc_completion_queue` created for `next`, drained by one named thread.
///
/// `@unchecked Sendable`: the queue pointer is immutable; the core documents
/// `grpc_completion_queue_next` and `_shutdown` as thread-safe, and `_destroy` runs on the
/// poller thread after it saw `GRPC_QUEUE_SHUTDOWN`, when no other thread can use the queue.
final class CompletionQueue: @unchecked Sendable {
    let pointer: OpaquePointer
    let name: String
    private let poller: PollerThread

    init(name: String, onIdle: @escaping @Sendable () -> Void) {
        let pointer = grpc_completion_queue_create_for_next(nil)!
        self.pointer = pointer
        self.name = name
        self.poller = PollerThread(name: name, queue: pointer, onIdle: onIdle)
    }

    /// Starts the shutdown; the poller finishes it (drain, destroy, `grpc_shutdown`) and exits.
    func shutdown() {
        grpc_completion_queue_shutdown(self.pointer)
    }
}

/// The thread that parks in `grpc_completion_queue_next` and runs each completion's closure.
///
/// A thread inside `next` also drives the core's I/O for every call (primer §1), so there is
/// always one, even when nothing is in flight.
private final class PollerThread: @unchecked Sendable {
    // Immutable after init; the thread is detached and owns itself until the queue shuts down.
    private let queue: OpaquePointer
    private let onIdle: @Sendable () -> Void

    init(name: String, queue: OpaquePointer, onIdle: @escaping @Sendable () -> Void) {
        self.queue = queue
        self.onIdle = onIdle
        // Linux keeps at most 15 bytes of a thread's name (`grpc-pool-cq-123` shows as
        // `grpc-pool-cq-12`).
        let name = String(decoding: name.utf8.prefix(15), as: UTF8.self)
        let thread = Thread { [self] in
            // Named by the thread itself, through prctl (shows in `ps -L` and debuggers):
            // Foundation's `Thread.name` setter on Linux names the thread only once `start()` has
            // stored its handle, which a new thread can outrun; the poller then kept the name it
            // inherited from whichever thread started it (seen: a test found no poller by name).
            _ = CGRPCCore_name_current_thread(name)
            self.run()
        }
        LiveObjects.pollerThreads.increment()
        thread.start()
    }

    private func run() {
        loop: while true {
            let event = grpc_completion_queue_next(self.queue, .fromNow(.seconds(1)), nil)
            switch event.type {
            case GRPC_OP_COMPLETE:
                CompletionTag.complete(event.tag!, success: event.success != 0)
            case GRPC_QUEUE_SHUTDOWN:
                break loop
            default:
                self.onIdle()  // GRPC_QUEUE_TIMEOUT: a second without completions
            }
        }
        grpc_completion_queue_destroy(self.queue)
        grpc_shutdown()
        LiveObjects.runtimes.decrement()
        LiveObjects.pollerThreads.decrement()
    }
}
