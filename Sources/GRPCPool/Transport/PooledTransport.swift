public import GRPCCore
internal import GRPCPoolCoreBridge

/// A grpc-swift-2 `ClientTransport` over a pool: each RPC runs on a connection the pool picks
/// for it (``ConnectionPool/client``, ``PoolManager/client(for:)``, ``ConnectionPool/makeTransport()``),
/// or on one leased connection (``PooledConnection/client``).
///
/// The pool connects and repairs the channels: `connect()` only waits, and
/// `beginGracefulShutdown()` stops this transport taking new RPCs (FAILED_PRECONDITION), as the
/// pool's shutdown does. Over a pool, when no connection is healthy the pool's
/// ``NoHealthyConnectionPolicy`` decides (waiting until the RPC's deadline by default). With
/// `enableRetries`, a failed attempt is retried on a connection picked again: unary RPCs by this
/// transport, the streaming kinds by GRPCCore (``config(forMethod:)`` carries their policy).
public final class PooledTransport: ClientTransport {
    public typealias Bytes = [UInt8]

    /// Where the RPCs go: picked from a pool per RPC, or one connection.
    private enum Target: Sendable {
        case pool(Owner<ConnectionPool>)
        case connection(Owner<PooledConnection>)
    }

    private let target: Target
    let lifecycle = TransportLifecycle()
    private let methodConfigs: TransportMethodConfigs
    private let serviceID: ServiceID
    private let peer: String

    /// A transport over `pool`, holding it strongly (`retained`: a transport the application
    /// made and owns) or weakly (the client the pool caches, which must not keep it alive).
    init(pool: ConnectionPool, retained: Bool) {
        self.target = .pool(Owner(pool, retained: retained))
        self.methodConfigs = TransportMethodConfigs(pool.config)
        self.serviceID = pool.serviceID
        self.peer = pool.config.endpoints.map(\.description).joined(separator: ",")
    }

    /// A transport over one connection, held weakly (its cached client).
    init(connection: PooledConnection) {
        self.target = .connection(Owner(connection, retained: false))
        self.methodConfigs = TransportMethodConfigs(connection.config)
        self.serviceID = connection.serviceID
        self.peer = connection.peer
    }

    public var retryThrottle: RetryThrottle? { nil }

    /// Runs until ``beginGracefulShutdown()`` has been called and every RPC has finished.
    public func connect() async throws {
        await self.lifecycle.waitUntilClosed()
    }

    public func beginGracefulShutdown() {
        self.lifecycle.beginGracefulShutdown()
    }

    public func withStream<T: Sendable>(
        descriptor: MethodDescriptor,
        options: CallOptions,
        _ closure: (_ stream: RPCStream<Inbound, Outbound>, _ context: ClientContext) async throws -> T
    ) async throws -> T {
        func refuse(_ error: RPCError) async throws -> T {
            try await Refusal.run(error, descriptor: descriptor, peer: self.peer, closure)
        }
        guard self.lifecycle.openStream() else { return try await refuse(Refusal.shuttingDown(self.serviceID)) }
        defer { self.lifecycle.closeStream() }
        switch self.target {
        case .connection(let owner):
            guard let connection = owner.value else {
                return try await refuse(Refusal.shuttingDown(self.serviceID))
            }
            return try await connection.withStream(
                descriptor: descriptor,
                options: options,
                in: connection.slot(),
                retryPick: { _ in connection.slot() },
                closure
            )
        case .pool(let owner):
            guard let pool = owner.value else { return try await refuse(Refusal.shuttingDown(self.serviceID)) }
            switch await pool.connectionResult(waitingAtMost: options.timeout) {
            case .success(let slot):
                return try await slot.connection.withStream(
                    descriptor: descriptor,
                    options: options,
                    in: slot,
                    retryPick: { timeLimit in try? await pool.connection(waitingAtMost: timeLimit) },
                    closure
                )
            case .failure(let error):
                return try await refuse(error)
            }
        }
    }

    public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? {
        self.methodConfigs.config(for: descriptor)
    }
}

extension PooledConnection {
    /// A `GRPCClient` whose every RPC runs on this connection: wrap it in a generated stub.
    ///
    /// ```swift
    /// try await manager.withConnection(to: "stt") { connection in
    ///     try await STT.Client(wrapping: connection.client).transcribe(request)
    /// }
    /// ```
    ///
    /// The client needs no `runConnections()`: the pool runs the connection. It stops taking
    /// RPCs (FAILED_PRECONDITION) when the pool shuts down. It refers to the connection weakly,
    /// so keeping it does not keep the pool's channels alive.
    public var client: GRPCClient<PooledTransport> {
        self.clientStorage.value { CachedClient(PooledTransport(connection: self)) }.client
    }
}

extension ConnectionPool {
    /// A `GRPCClient` that balances every RPC over this pool's healthy connections. It refers to
    /// the pool weakly, so keeping it does not keep the pool's channels alive.
    public var client: GRPCClient<PooledTransport> {
        self.clientStorage.value { CachedClient(PooledTransport(pool: self, retained: false)) }.client
    }

    /// A new transport over this pool, for a `GRPCClient` of your own (with interceptors, say):
    /// `GRPCClient(transport: pool.makeTransport(), interceptors: [...])`. It keeps the pool alive.
    public func makeTransport() -> PooledTransport {
        PooledTransport(pool: self, retained: true)
    }
}

/// A cached `GRPCClient` with its transport, which the pool shuts down itself: the client is
/// never started nor stopped, so that after shutdown its RPCs meet the transport's
/// FAILED_PRECONDITION rather than GRPCCore's `RuntimeError` for a stopped client.
struct CachedClient: Sendable {
    let client: GRPCClient<PooledTransport>
    let transport: PooledTransport

    init(_ transport: PooledTransport) {
        self.transport = transport
        self.client = GRPCClient(transport: transport)
    }
}

/// What a transport runs on: held strongly (a transport the application made and owns) or
/// weakly (the client the pool caches, which must not keep its owner alive).
private struct Owner<Object: AnyObject & Sendable>: Sendable {
    private let strong: Object?
    private weak let weak: Object?

    init(_ object: Object, retained: Bool) {
        self.strong = retained ? object : nil
        self.weak = object
    }

    var value: Object? { self.strong ?? self.weak }
}
