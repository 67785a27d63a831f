internal import GRPCPoolCoreBridge

/// The connectivity state of a pooled connection's channel, as the gRPC core reports it.
///
/// ```
///            connect            connected
///   idle ────────────▶ connecting ─────────▶ ready
///    ▲                  │    ▲                 │
///    │ idle timeout     │    │ backoff done     │ connection lost / GOAWAY
///    └──────────────────┼────┼─────────────────┘
///                       ▼    │
///               transientFailure          (any) ──close──▶ shutdown
/// ```
public enum ConnectionState: String, Sendable, Hashable, CustomStringConvertible {
    /// No connection and no attempt under way; the next call (or a connect request) starts one.
    case idle
    /// A connection attempt is under way.
    case connecting
    /// Connected: calls go out at once.
    case ready
    /// The last attempt failed; the core is waiting out its reconnect backoff.
    case transientFailure
    /// The channel was closed and will never connect again.
    case shutdown

    public var description: String { self.rawValue }

    init(_ connectivity: ChannelConnectivity) {
        switch connectivity {
        case .idle: self = .idle
        case .connecting: self = .connecting
        case .ready: self = .ready
        case .transientFailure: self = .transientFailure
        case .shutdown: self = .shutdown
        }
    }
}
