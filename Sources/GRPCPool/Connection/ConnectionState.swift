public import GRPCPoolCoreBridge

/// The connectivity state of a pooled connection: `idle`, `connecting`, `ready`,
/// `transientFailure` or `shutdown` (the seed's `ConnectionState`), as the gRPC core reports it.
public typealias ConnectionState = GRPCPoolCoreBridge.ConnectionState
