internal import CGRPCCore
package import GRPCCore

/// How a call ended, as the server (or the core) reported it.
package struct CallStatus: Sendable, Hashable {
    package var code: Status.Code
    package var message: String
    package var trailingMetadata: Metadata
    /// The core's own description of a local failure (`error_string`), when it gave one.
    package var debugDescription: String?

    package init(code: Status.Code, message: String, trailingMetadata: Metadata, debugDescription: String? = nil) {
        self.code = code
        self.message = message
        self.trailingMetadata = trailingMetadata
        self.debugDescription = debugDescription
    }

    /// The message to show: the server's, or the core's own description when there is none.
    package var text: String {
        if self.message.isEmpty, let debugDescription { return debugDescription }
        return self.message
    }

    /// The status as an error, or `nil` when it is OK.
    package var error: RPCError? {
        guard let code = RPCError.Code(self.code) else { return nil }
        return RPCError(code: code, message: self.text, metadata: self.trailingMetadata)
    }
}

/// The receive slots of `GRPC_OP_RECV_STATUS_ON_CLIENT`, which must stay put until the op
/// completes; ``take()`` copies them out and frees what the core allocated.
struct StatusSlots {
    var trailingMetadata = grpc_metadata_array()
    var status = GRPC_STATUS_UNKNOWN
    var details = grpc_slice()
    var errorString: UnsafePointer<CChar>? = nil

    static func initialize(_ slots: UnsafeMutablePointer<StatusSlots>) {
        slots.initialize(to: StatusSlots())
        grpc_metadata_array_init(slots.pointer(to: \.trailingMetadata)!)
    }

    static func op(_ slots: UnsafeMutablePointer<StatusSlots>) -> grpc_op {
        var op = grpc_op()
        op.op = GRPC_OP_RECV_STATUS_ON_CLIENT
        op.data.recv_status_on_client.trailing_metadata = slots.pointer(to: \.trailingMetadata)!
        op.data.recv_status_on_client.status = slots.pointer(to: \.status)!
        op.data.recv_status_on_client.status_details = slots.pointer(to: \.details)!
        op.data.recv_status_on_client.error_string = slots.pointer(to: \.errorString)!
        return op
    }

    /// Copies out the status and releases the core's allocations. Call once, after completion.
    ///
    /// UNAVAILABLE and DEADLINE_EXCEEDED — what a broken, stalled or slow connection produces —
    /// name the call's `target` in their message (`Socket closed [127.0.0.1:50051]`), unless the
    /// message names it already, so that a pool's caller can tell which endpoint failed.
    static func take(_ slots: UnsafeMutablePointer<StatusSlots>, target: String) -> CallStatus {
        let code = Status.Code(rawValue: Int(slots.pointee.status.rawValue)) ?? .unknown
        var status = CallStatus(
            code: code,
            message: slots.pointee.details.string,
            trailingMetadata: Metadata(copying: slots.pointee.trailingMetadata),
            debugDescription: slots.pointee.errorString.map { String(cString: $0) }
        )
        if code == .unavailable || code == .deadlineExceeded, !status.message.contains(target) {
            let message = status.message.isEmpty ? (status.debugDescription ?? "") : status.message
            status.message = message + " [\(target)]"
        }
        grpc_slice_unref(slots.pointee.details)
        if let errorString = slots.pointee.errorString {
            gpr_free(UnsafeMutableRawPointer(mutating: errorString))
        }
        grpc_metadata_array_destroy(slots.pointer(to: \.trailingMetadata)!)
        return status
    }

    /// Releases slots whose op never started.
    static func discard(_ slots: UnsafeMutablePointer<StatusSlots>) {
        grpc_metadata_array_destroy(slots.pointer(to: \.trailingMetadata)!)
    }
}
