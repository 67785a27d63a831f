internal import CGRPCCore
internal import GRPCCore

/// Owns one reference to a `grpc_call` and serialises the batches started on it.
///
/// `@unchecked Sendable`: the pointer is immutable; `grpc_call_start_batch` is called only under
/// the lock of `startedBatches` (grpc.h asks batches on one call to be serialised); `grpc_call_cancel` is
/// thread-safe (grpc.h); `grpc_call_unref` runs once, in `deinit`, when the last holder — the
/// caller or a pending batch's tag — lets go, so the core never sees the pointer after it.
final class CallHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    /// The channel that created the call.
    let channel: ChannelHandle
    /// Keeps the completion queue alive until the call is released (see ``CoreRuntime``).
    let runtime: CoreRuntime
    /// Batches started on the call; its lock serialises `grpc_call_start_batch`. (A count rather
    /// than `Void`: ThreadSanitizer mistakes accesses to a zero-sized locked value for races.)
    private let startedBatches = Locked(0)

    init(pointer: OpaquePointer, channel: ChannelHandle) {
        self.pointer = pointer
        self.channel = channel
        self.runtime = channel.runtime
        LiveObjects.calls.increment()
        channel.calls.created()
    }

    deinit {
        grpc_call_unref(self.pointer)
        LiveObjects.calls.decrement()
        self.channel.calls.released()
    }

    /// The target of the channel that created the call.
    var target: String { self.channel.target }

    /// Cancels the call; the server sees RST_STREAM and the call ends with CANCELLED.
    func cancel() {
        _ = grpc_call_cancel(self.pointer, nil)
    }

    /// Starts a batch. `onComplete` runs on the poller with the batch's `ok`; the tag retains
    /// this handle (and whatever `onComplete` captures) until then.
    ///
    /// - Returns: the core's synchronous error when it refused the batch, in which case
    ///   `onComplete` never runs.
    func startBatch(_ ops: UnsafeBufferPointer<grpc_op>, onComplete: @escaping (Bool) -> Void) -> grpc_call_error {
        let tag = CompletionTag.make { success in
            withExtendedLifetime(self) { onComplete(success) }
        }
        let result = self.startedBatches.withLock { count in
            count += 1
            return grpc_call_start_batch(self.pointer, ops.baseAddress, ops.count, tag, nil)
        }
        if result != GRPC_CALL_OK {
            CompletionTag.cancel(tag)
        }
        return result
    }
}

extension grpc_call_error {
    /// The core's refusal of a batch as an RPC error.
    var rpcError: RPCError {
        let text = String(cString: grpc_call_error_to_string(self))
        if self == GRPC_CALL_ERROR_INVALID_METADATA {
            return RPCError(code: .invalidArgument, message: "invalid metadata: \(text)")
        }
        return RPCError(code: .internalError, message: "the gRPC core refused the batch: \(text)")
    }
}
