public import GRPCCore

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
    /// RPCs (FAILED_PRECONDITION) when the pool shuts down.
    public var client: GRPCClient<Transport> {
        self.clientStorage.value { GRPCClient(transport: Transport(connection: self)) }
    }

    /// A grpc-swift-2 `ClientTransport` over one pooled connection: what ``client`` runs on.
    ///
    /// The connection belongs to its pool; `connect()` only waits (the pool connects and repairs
    /// the channel), and `beginGracefulShutdown()` stops this transport taking new RPCs.
    public final class Transport: ClientTransport {
        public typealias Bytes = [UInt8]

        let connection: PooledConnection
        let lifecycle = TransportLifecycle()
        private let methodConfig: MethodConfig

        init(connection: PooledConnection) {
            self.connection = connection
            self.methodConfig = connection.config.methodConfig
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
            try await self.lifecycle.stream("connection \(self.connection.index) of '\(self.connection.serviceID)'") {
                try await self.connection.withStream(descriptor: descriptor, options: options, closure)
            }
        }

        public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? {
            self.methodConfig
        }
    }
}

extension ConnectionPool {
    /// A `GRPCClient` that balances every RPC over this pool's healthy connections.
    public var client: GRPCClient<Transport> {
        self.clientStorage.value { GRPCClient(transport: self.makeTransport()) }
    }

    /// A new transport over this pool, for a `GRPCClient` of your own (with interceptors, say):
    /// `GRPCClient(transport: pool.makeTransport(), interceptors: [...])`.
    public func makeTransport() -> Transport {
        Transport(pool: self)
    }

    /// A grpc-swift-2 `ClientTransport` that picks a connection of the pool for every RPC: what
    /// ``PoolManager/client(for:)`` runs on.
    ///
    /// When no connection is healthy, the pool's ``NoHealthyConnectionPolicy`` decides (waiting
    /// until the RPC's deadline by default); with `enableRetries`, ``config(forMethod:)`` carries
    /// the retry policy, so GRPCCore retries an RPC that failed with UNAVAILABLE — on the next
    /// connection, since each attempt picks again.
    public final class Transport: ClientTransport {
        public typealias Bytes = [UInt8]

        let pool: ConnectionPool
        let lifecycle = TransportLifecycle()
        private let methodConfig: MethodConfig

        init(pool: ConnectionPool) {
            self.pool = pool
            self.methodConfig = pool.config.methodConfig
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
            try await self.lifecycle.stream("the pool transport of '\(self.pool.serviceID)'") {
                let connection: PooledConnection
                switch await self.pool.connectionResult(waitingAtMost: options.timeout) {
                case .success(let picked):
                    connection = picked
                case .failure(let error):
                    // The contract: a transport that is shutting down refuses with FAILED_PRECONDITION.
                    if let cause = error.cause as? GRPCPoolError, cause.code == .shutDown {
                        throw RPCError(code: .failedPrecondition, message: error.message, cause: cause)
                    }
                    throw error
                }
                return try await connection.withStream(descriptor: descriptor, options: options, reserved: true, closure)
            }
        }

        public func config(forMethod descriptor: MethodDescriptor) -> MethodConfig? {
            self.methodConfig
        }
    }
}
