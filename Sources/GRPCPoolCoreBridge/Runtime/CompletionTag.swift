#if canImport(Glibc)
private import Glibc
#elseif canImport(Darwin)
private import Darwin
#endif

/// The tag passed to the core with every batch and connectivity watch.
///
/// The tag is retained (+1) when it is handed to the core and released exactly once: by the
/// poller when the completion arrives, or by ``cancel(_:)`` when the core refused the operation
/// (no event will ever come for it, grpc.h).
final class CompletionTag {
    private let onComplete: (Bool) -> Void

    private init(_ onComplete: @escaping (Bool) -> Void) {
        self.onComplete = onComplete
    }

    /// A +1 tag for the core.
    static func make(_ onComplete: @escaping (_ success: Bool) -> Void) -> UnsafeMutableRawPointer {
        let tag = Unmanaged.passRetained(CompletionTag(onComplete)).toOpaque()
        SanitizerAnnotations.release(tag)
        return tag
    }

    /// Runs and releases a tag the core returned.
    static func complete(_ tag: UnsafeMutableRawPointer, success: Bool) {
        SanitizerAnnotations.acquire(tag)
        Unmanaged<CompletionTag>.fromOpaque(tag).takeRetainedValue().onComplete(success)
    }

    /// Releases a tag the core never took.
    static func cancel(_ tag: UnsafeMutableRawPointer) {
        SanitizerAnnotations.acquire(tag)
        Unmanaged<CompletionTag>.fromOpaque(tag).release()
    }
}

/// Tells ThreadSanitizer, when it is loaded, what the core synchronises.
///
/// The thread that starts a batch hands the core a tag (and the buffers it filled); the poller
/// gets the tag back from `grpc_completion_queue_next`. The core orders the two with its own
/// locks, which are not instrumented, so without these annotations TSan reports everything the
/// batch's owner wrote before the hand-off as racing with the poller. `release(tag)` before the
/// hand-off and `acquire(tag)` after it draw exactly that happens-before edge. Outside a TSan
/// build the functions are not found and the calls do nothing.
enum SanitizerAnnotations {
    private typealias Annotation = @convention(c) (UnsafeMutableRawPointer?) -> Void

    private static let acquireFunction: Annotation? = lookup("__tsan_acquire")
    private static let releaseFunction: Annotation? = lookup("__tsan_release")

    static func acquire(_ address: UnsafeMutableRawPointer) {
        acquireFunction?(address)
    }

    static func release(_ address: UnsafeMutableRawPointer) {
        releaseFunction?(address)
    }

    private static func lookup(_ name: String) -> Annotation? {
        // RTLD_DEFAULT: the global scope, where the TSan runtime is when it is linked in.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else { return nil }
        return unsafeBitCast(symbol, to: Annotation.self)
    }
}
