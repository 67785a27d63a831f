/// An error from the pool itself (not from an RPC: those are `GRPCCore.RPCError`).
public struct GRPCPoolError: Error, Sendable, CustomStringConvertible {
    /// What went wrong; new codes may be added without a breaking change.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case unknownService
            case shutDown
            case noHealthyConnection
            case alreadyRunning
            case saturated
            case connectionFailed
        }

        private let value: Value

        /// No pool is configured for the service id.
        public static let unknownService = Code(value: .unknownService)
        /// The manager or pool is shutting down or has shut down.
        public static let shutDown = Code(value: .shutDown)
        /// No connection could serve the call under the configured policy.
        public static let noHealthyConnection = Code(value: .noHealthyConnection)
        /// Every connection was at its stream capacity and the queue of waiting calls was full
        /// (or the call's deadline came first).
        public static let saturated = Code(value: .saturated)
        /// A connection could not be made, checked or kept (the pool's own finding, as a cause).
        public static let connectionFailed = Code(value: .connectionFailed)
        /// `run()` was called twice.
        public static let alreadyRunning = Code(value: .alreadyRunning)

        public var description: String { self.value.rawValue }
    }

    public var code: Code
    public var message: String
    /// The underlying error, e.g. the last connection error.
    public var cause: (any Error)?

    public init(code: Code, message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String {
        if let cause {
            return "\(code): \"\(message)\" (cause: \"\(cause)\")"
        }
        return "\(code): \"\(message)\""
    }
}
