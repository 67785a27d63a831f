// `ConnectionState` (idle, connecting, ready, transientFailure, shutdown: the seed's
// `ConnectionState`) is declared next to the C-core bridge that produces it. The bridge's only
// public declaration is that enum; re-exporting the module makes it part of `import GRPCPool`,
// as grpc-swift-nio-transport's umbrella module re-exports its core.
@_exported public import GRPCPoolCoreBridge
