public import CoreMetrics
public import GRPCCore
internal import GRPCPoolCoreBridge
public import Logging
public import ServiceLifecycle

/// Keeps one ``ConnectionPool`` per service and runs them.
///
/// ```swift
/// let manager = try PoolManager(services: [
///     "stt": .init(host: "localhost", port: 50051, poolSize: 3),
///     "nlp": .init(host: "localhost", port: 50052, poolSize: 2),
/// ])
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await manager.run() }
///     let reply = try await manager.withConnection(to: "stt") { connection in
///         try await STT.Client(wrapping: connection.client).transcribe(request)
///     }
///     manager.beginGracefulShutdown()
/// }
/// ```
///
/// It is a swift-service-lifecycle `Service`: put it in a `ServiceGroup` and a graceful shutdown
/// (SIGTERM) drains the calls in flight, closes every channel and releases the gRPC core.
/// Calls can be made before ``run()`` starts (channels connect on demand), but health
/// monitoring and reconnection run only while ``run()`` does.
public final class PoolManager: Service, Sendable {
    /// The pools, by service.
    public let pools: [ServiceID: ConnectionPool]
    private let logger: Logger
    private let metricsLogInterval: Duration?
    private let lifecycle: Locked<Lifecycle>

    private enum Lifecycle {
        case idle
        case running
        case shuttingDown
        case stopped
    }

    /// Creates a pool per service, with its channels; they connect when ``run()`` starts, or at a
    /// call made before it (health monitoring and repair run only while ``run()`` does).
    ///
    /// - Parameters:
    ///   - services: the configuration of each service.
    ///   - logger: where pool events go (label `grpc.pool` by default); metadata keys are
    ///     `grpc.pool.service`, `grpc.pool.connection`, `grpc.pool.endpoint`.
    ///   - metricsFactory: where the swift-metrics instruments go; by default the factory the
    ///     application bootstrapped (`MetricsSystem.factory`). The library never bootstraps.
    ///   - metricsLogInterval: when set, ``run()`` logs one metrics line per pool at this interval
    ///     (at info level).
    ///   - observers: receive every pool event (``PoolEvent``) as it happens.
    /// - Throws: ``ConfigurationError`` naming the first invalid field (prefixed with the service id).
    public convenience init(
        services: [ServiceID: ServiceConfig],
        logger: Logger = Logger(label: "grpc.pool"),
        metricsFactory: (any MetricsFactory)? = nil,
        metricsLogInterval: Duration? = nil,
        observers: [any PoolObserver] = []
    ) throws(ConfigurationError) {
        try self.init(
            services: services,
            logger: logger,
            metricsFactory: metricsFactory,
            metricsLogInterval: metricsLogInterval,
            observers: observers,
            clock: .continuous
        )
    }

    /// The same, with the pools' timers on `clock` (``PoolClock``): tests move a clock of their
    /// own to fire them.
    package init(
        services: [ServiceID: ServiceConfig],
        logger: Logger = Logger(label: "grpc.pool"),
        metricsFactory: (any MetricsFactory)? = nil,
        metricsLogInterval: Duration? = nil,
        observers: [any PoolObserver] = [],
        clock: any PoolClock
    ) throws(ConfigurationError) {
        guard !services.isEmpty else {
            throw ConfigurationError(field: "services", value: "[:]", reason: "must configure at least one service")
        }
        var pools: [ServiceID: ConnectionPool] = [:]
        for (id, config) in services.sorted(by: { $0.key < $1.key }) {
            guard !id.rawValue.isEmpty else {
                throw ConfigurationError(field: "services", value: "\"\"", reason: "a service id must not be empty")
            }
            let credentials: ChannelCredentials
            do {
                credentials = try config.validated()
            } catch {
                throw ConfigurationError(field: "\(id).\(error.field)", value: error.value, reason: error.reason)
            }
            do {
                pools[id] = try ConnectionPool(
                    serviceID: id,
                    config: config,
                    credentials: credentials,
                    logger: logger,
                    metricsFactory: metricsFactory ?? MetricsSystem.factory,
                    observers: observers,
                    clock: clock
                )
            } catch let error as ConfigurationError {
                throw ConfigurationError(field: "\(id).\(error.field)", value: error.value, reason: error.reason)
            } catch {
                throw ConfigurationError(field: "\(id).endpoints", value: "\(config.endpoints)", reason: "\(error)")
            }
        }
        if let interval = metricsLogInterval, interval <= .zero {
            throw ConfigurationError(field: "metricsLogInterval", value: "\(interval)", reason: "must be positive")
        }
        self.pools = pools
        self.logger = logger
        self.metricsLogInterval = metricsLogInterval
        self.lifecycle = Locked(.idle)
    }

    /// The pool of `service`.
    ///
    /// - Throws: ``GRPCPoolError`` `.unknownService` naming the id and the configured ones.
    public func pool(for service: ServiceID) throws(GRPCPoolError) -> ConnectionPool {
        guard let pool = self.pools[service] else {
            let known = self.pools.keys.sorted().map(\.rawValue).joined(separator: ", ")
            throw GRPCPoolError(
                code: .unknownService,
                message: "no pool for service '\(service)' (configured: \(known))"
            )
        }
        return pool
    }

    /// Leases a connection of `service` for `body`.
    ///
    /// The connection goes back to the pool when `body` returns, throws or is cancelled.
    ///
    /// - Parameters:
    ///   - service: which pool.
    ///   - timeout: how long to wait for a healthy connection with room when none is (under
    ///     ``NoHealthyConnectionPolicy/waitUntilDeadline``); default the service's
    ///     `connectionWaitTimeout`.
    /// - Throws: ``GRPCPoolError`` for an unknown service; `RPCError` `.unavailable` when no
    ///   connection can serve (or the pool is shutting down), `.deadlineExceeded` when none became
    ///   healthy in time; whatever `body` throws.
    public func withConnection<Result>(
        to service: ServiceID,
        timeout: Duration? = nil,
        _ body: (PooledConnection) async throws -> Result
    ) async throws -> Result {
        try await self.pool(for: service).withConnection(timeout: timeout, body)
    }

    /// A `GRPCClient` for `service` that picks a healthy connection for every RPC; wrap it in
    /// a generated stub: `STT.Client(wrapping: try manager.client(for: "stt"))`.
    ///
    /// - Throws: ``GRPCPoolError`` `.unknownService`.
    public func client(for service: ServiceID) throws(GRPCPoolError) -> GRPCClient<PooledTransport> {
        try self.pool(for: service).client
    }

    /// A snapshot of every pool.
    public func metrics() -> [ServiceID: PoolMetrics] {
        self.pools.mapValues { $0.metrics() }
    }

    /// Checks every connection of every pool now; a service is healthy when at least one of
    /// its connections is.
    public func healthCheck() async -> [ServiceID: Bool] {
        await withTaskGroup(of: (ServiceID, Bool).self) { group in
            for (id, pool) in self.pools {
                group.addTask { (id, await pool.healthCheck()) }
            }
            var result: [ServiceID: Bool] = [:]
            for await (id, healthy) in group { result[id] = healthy }
            return result
        }
    }

    /// Waits until every connection of every pool's working set is healthy, for at most
    /// `timeLimit` (``ConnectionPool/waitUntilHealthy(connections:timeLimit:)`` for each);
    /// whether they all were in time.
    public func waitUntilHealthy(timeLimit: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            for pool in self.pools.values {
                group.addTask { await pool.waitUntilHealthy(timeLimit: timeLimit) }
            }
            return await group.reduce(true) { $0 && $1 }
        }
    }

    /// Connects every pool and keeps them healthy until graceful shutdown (ServiceLifecycle's,
    /// or ``beginGracefulShutdown()``), which drains the calls in flight and closes every
    /// channel. Cancelling the task closes at once.
    ///
    /// - Throws: ``GRPCPoolError`` `.alreadyRunning` when called twice.
    public func run() async throws {
        try self.lifecycle.withLock { (state: inout Lifecycle) throws(GRPCPoolError) in
            guard case .idle = state else {
                throw GRPCPoolError(code: .alreadyRunning, message: "PoolManager.run() may be called once")
            }
            state = .running
        }
        self.logger.info("pool manager starting", metadata: ["grpc.pool.services": "\(self.pools.keys.sorted())"])
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { group in
                for pool in self.pools.values {
                    group.addTask { await pool.run(metricsLogInterval: self.metricsLogInterval) }
                }
            }
        } onGracefulShutdown: {
            self.beginGracefulShutdown()
        }
        self.lifecycle.withLock { $0 = .stopped }
        self.logger.info("pool manager shut down")
    }

    /// Stops handing out connections and lets ``run()`` return once the calls in flight finish.
    public func beginGracefulShutdown() {
        let start = self.lifecycle.withLock { state -> Bool in
            switch state {
            case .idle, .running:
                state = .shuttingDown
                return true
            case .shuttingDown, .stopped:
                return false
            }
        }
        guard start else { return }
        self.logger.info("pool manager shutting down")
        for pool in self.pools.values { pool.beginGracefulShutdown() }
    }
}
