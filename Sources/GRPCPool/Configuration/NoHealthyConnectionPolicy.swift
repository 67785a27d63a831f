/// What a call does when no connection of its pool is healthy.
public struct NoHealthyConnectionPolicy: Sendable, Hashable, CustomStringConvertible {
    enum Value: String, Sendable, Hashable {
        case waitUntilDeadline
        case failFast
        case useAnyConnection
    }

    let value: Value

    /// Wait for a connection to become healthy, until the call's deadline (then
    /// DEADLINE_EXCEEDED). The default.
    public static let waitUntilDeadline = NoHealthyConnectionPolicy(value: .waitUntilDeadline)
    /// Fail at once with UNAVAILABLE.
    public static let failFast = NoHealthyConnectionPolicy(value: .failFast)
    /// Use a connection anyway, in turn, and let the call fail or succeed on it.
    public static let useAnyConnection = NoHealthyConnectionPolicy(value: .useAnyConnection)

    public var description: String { self.value.rawValue }
}
