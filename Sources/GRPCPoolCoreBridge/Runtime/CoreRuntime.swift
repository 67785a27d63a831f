internal import CGRPCCore
private import Synchronization

private import Foundation

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
/// ``shared()`` hands out the live runtime, or starts a new one when the previous one has gone
/// (the reference count reached zero). The poller only resumes continuations and yields to
/// streams; it never runs user code and never blocks except inside `grpc_completion_queue_next`.
package final class CoreRuntime: Sendable {
    /// The completion queue every call and connectivity watch of this runtime uses.
    let completionQueue: CompletionQueue

    /// A sequence number, unique in the process, for diagnostics.
    package let generation: Int

    private static let current = Mutex<WeakRuntime>(WeakRuntime())
    private static let generations = Atomic<Int>(0)

    private init() {
        grpc_init()
        let generation = Self.generations.wrappingAdd(1, ordering: .relaxed).newValue
        self.generation = generation
        self.completionQueue = CompletionQueue(name: "grpc-pool-cq-\(generation)")
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
        Self.current.withLock { weak in
            if let runtime = weak.runtime {
                return runtime
            }
            let runtime = CoreRuntime()
            weak.runtime = runtime
            return runtime
        }
    }

    /// Whether the gRPC core is initialised in this process (`grpc_is_initialized`).
    package static var isCoreInitialized: Bool {
        grpc_is_initialized() != 0
    }
}

private struct WeakRuntime: @unchecked Sendable {
    // Only read and written under `CoreRuntime.current`'s lock.
    weak var runtime: CoreRuntime?
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

    init(name: String) {
        let pointer = grpc_completion_queue_create_for_next(nil)!
        self.pointer = pointer
        self.name = name
        self.poller = PollerThread(name: name, queue: pointer)
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

    init(name: String, queue: OpaquePointer) {
        self.queue = queue
        let thread = Thread { [self] in
            Thread.current.name = name  // shows in `ps -L` and debuggers (Linux keeps 15 bytes)
            self.run()
        }
        thread.name = name
        LiveObjects.pollerThreads.increment()
        thread.start()
    }

    private func run() {
        let forever = gpr_inf_future(GPR_CLOCK_REALTIME)
        loop: while true {
            let event = grpc_completion_queue_next(self.queue, forever, nil)
            switch event.type {
            case GRPC_OP_COMPLETE:
                CompletionTag.complete(event.tag!, success: event.success != 0)
            case GRPC_QUEUE_SHUTDOWN:
                break loop
            default:
                continue  // GRPC_QUEUE_TIMEOUT cannot happen with an infinite deadline.
            }
        }
        grpc_completion_queue_destroy(self.queue)
        grpc_shutdown()
        LiveObjects.runtimes.decrement()
        LiveObjects.pollerThreads.decrement()
    }
}
