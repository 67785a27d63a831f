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
        Unmanaged.passRetained(CompletionTag(onComplete)).toOpaque()
    }

    /// Runs and releases a tag the core returned.
    static func complete(_ tag: UnsafeMutableRawPointer, success: Bool) {
        Unmanaged<CompletionTag>.fromOpaque(tag).takeRetainedValue().onComplete(success)
    }

    /// Releases a tag the core never took.
    static func cancel(_ tag: UnsafeMutableRawPointer) {
        Unmanaged<CompletionTag>.fromOpaque(tag).release()
    }
}
