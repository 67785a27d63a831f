import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// Waits for threads of this process to exit, without holding a thread of Swift's cooperative
/// pool and without polling: each thread gets a pidfd (`pidfd_open` with `PIDFD_THREAD`, Linux
/// 6.9 and later), which becomes readable when the thread exits, and one dedicated thread blocks
/// in `poll(2)` on them.
///
/// The dedicated thread starts with the watcher and never exits: make the watcher before taking
/// a baseline of the process's threads, so that it is in the baseline too.
final class ThreadExitWatcher: Sendable {
    private struct Request {
        let threads: [Int32]
        let limit: Duration
        let continuation: CheckedContinuation<Bool, Never>
    }

    private final class Shared: Sendable {
        let requests = NIOLockedValueBox<[Request]>([])
        let wake = DispatchSemaphore(value: 0)
    }

    private let shared = Shared()

    init() {
        let shared = self.shared
        let thread = Thread {
            while true {
                shared.wake.wait()
                guard let request = shared.requests.withLockedValue({ $0.isEmpty ? nil : $0.removeFirst() }) else {
                    continue
                }
                request.continuation.resume(returning: Self.block(until: request.threads, exitWithin: request.limit))
            }
        }
        thread.name = "thread-exits"
        thread.start()
    }

    /// Whether every thread of `ids` (thread ids, as in `/proc/self/task`) exits within `limit`.
    func exit(of ids: [Int32], within limit: Duration) async -> Bool {
        guard !ids.isEmpty else { return true }
        return await withCheckedContinuation { continuation in
            self.shared.requests.withLockedValue {
                $0.append(Request(threads: ids, limit: limit, continuation: continuation))
            }
            self.shared.wake.signal()
        }
    }

    /// glibc's `pidfd_open` (2.36 and later; Swift's Glibc module does not export
    /// `<sys/pidfd.h>`), found at run time.
    private static let pidfdOpen: (@convention(c) (Int32, UInt32) -> Int32)? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "pidfd_open") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, UInt32) -> Int32).self)
    }()
    private static let pidfdThread = UInt32(O_EXCL)  // PIDFD_THREAD

    /// On the watcher's thread: opens a pidfd per thread and polls them until all are readable
    /// or `limit` has passed.
    private static func block(until threads: [Int32], exitWithin limit: Duration) -> Bool {
        let deadline = ContinuousClock.now.advanced(by: limit)
        var watched: [pollfd] = []
        defer { for entry in watched { close(entry.fd) } }
        guard let pidfdOpen = Self.pidfdOpen else { return false }
        for id in threads {
            let fd = pidfdOpen(id, Self.pidfdThread)
            if fd >= 0 {
                watched.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
            } else if errno != ESRCH {
                // Not a thread we can watch (a kernel before 6.9 has no PIDFD_THREAD): say so by
                // saying it did not exit; the count that follows shows whether it did.
                return false
            }
        }
        var pending = watched
        while !pending.isEmpty {
            let left = deadline - .now
            guard left > .zero else { return false }
            let milliseconds = Int32(min(left.components.seconds * 1000 + 1, Int64(Int32.max)))
            let ready = poll(&pending, nfds_t(pending.count), milliseconds)
            if ready < 0 && errno != EINTR { return false }
            pending = pending.filter { $0.revents == 0 }
        }
        return true
    }
}
