internal import CGRPCCore

/// The connectivity state of a channel, as the gRPC core reports it (GRPCPool shows it to
/// applications as its `ConnectionState`).
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
package enum ChannelConnectivity: String, Sendable, Hashable, CustomStringConvertible {
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

    package var description: String { self.rawValue }

    init(_ state: grpc_connectivity_state) {
        switch state {
        case GRPC_CHANNEL_IDLE: self = .idle
        case GRPC_CHANNEL_CONNECTING: self = .connecting
        case GRPC_CHANNEL_READY: self = .ready
        case GRPC_CHANNEL_TRANSIENT_FAILURE: self = .transientFailure
        default: self = .shutdown  // GRPC_CHANNEL_SHUTDOWN; an imported C enum needs a default.
        }
    }

    var core: grpc_connectivity_state {
        switch self {
        case .idle: GRPC_CHANNEL_IDLE
        case .connecting: GRPC_CHANNEL_CONNECTING
        case .ready: GRPC_CHANNEL_READY
        case .transientFailure: GRPC_CHANNEL_TRANSIENT_FAILURE
        case .shutdown: GRPC_CHANNEL_SHUTDOWN
        }
    }
}
