internal import CoreMetrics
internal import Foundation
package import GRPCCore
package import GRPCPoolCoreBridge
internal import Logging
internal import Synchronization

/// The connections to one service: picks a healthy one per call, watches and repairs them.
///
/// Pools are created and run by a ``PoolManager``; get one with ``PoolManager/pool(for:)``.
public final class ConnectionPool: Sendable {
    /// The service this pool serves.
    public let serviceID: ServiceID
    /// Its configuration.
    public let config: PoolManager.ServiceConfig
    /// Its connections, by index.
    public let connections: [PooledConnection]

    let logger: Logger
    /// The pool's machine, with the calls' counts and the waiting callers.
    let dispatcher: CallDispatcher
    /// Signalled when shutdown begins: what ``run()`` waits for while the pool is open (the
    /// dispatcher's `changes` of every call would wake it for nothing).
    let lifecycleChanges = ChangeSignal()
    let events: PoolEventSink
    let clientStorage = Locked<CachedClient?>(nil)
    /// The addresses the endpoints name, as last found.
    let addressBook: Locked<AddressBook>
    /// Signalled when a connection attempt fails: the endpoints' names are looked up again.
    let resolutionRequests = ChangeSignal()
    let resolutionFailureCounter: Counter
    /// What the pool's timers run on (``PoolClock``).
    let clock: any PoolClock
    /// gRPC's standard client metrics (``StandardMetrics``), shared by the connections.
    let standardMetrics: StandardMetrics
    /// The etcd cluster that `etcd:` endpoints are read from, when there are any.
    let registry: EtcdClient?

    /// Signalled at each call's end and each change of a connection: what readiness and drain
    /// waits look again at.
    var changes: ChangeSignal { self.dispatcher.changes }

    init(
        serviceID: ServiceID,
        config: PoolManager.ServiceConfig,
        credentials: ChannelCredentials,
        logger: Logger,
        metricsFactory: any MetricsFactory,
        observers: [any PoolObserver] = [],
        clock: any PoolClock = .continuous
    ) throws {
        self.serviceID = serviceID
        self.clock = clock
        self.config = config
        var logger = logger
        logger[metadataKey: "grpc.pool.service"] = "\(serviceID)"
        self.logger = logger
        let size = max(config.poolSize, config.maxConnections ?? 0)
        let book = AddressBook(endpoints: config.endpoints, clientID: config.discovery.clientID ?? Self.hostName)
        self.addressBook = Locked(book)
        self.resolutionFailureCounter = Counter(
            label: "grpc_pool_resolution_failures_total",
            dimensions: [("service", serviceID.rawValue)],
            factory: metricsFactory
        )
        let placements = Self.initialPlacements(book, count: size)
        self.registry =
            try book.registries.isEmpty
            ? nil
            : config.discovery.etcd.map {
                try EtcdClient(
                    $0,
                    for: serviceID,
                    logger: logger,
                    metricsFactory: metricsFactory,
                    clock: clock
                )
            }
        let subchannelMetrics = SubchannelMetrics(
            service: serviceID,
            endpoints: Dictionary(
                uniqueKeysWithValues: placements.enumerated().map { ($0, $1.endpoint.description) }
            ),
            factory: metricsFactory
        )
        let events = PoolEventSink(
            service: serviceID,
            observers: observers + [PoolEventLogger(logger: logger), subchannelMetrics]
        )
        self.events = events
        let dispatcher = CallDispatcher(
            config: config,
            active: (0..<size).map { $0 < config.poolSize },
            clock: clock
        )
        self.dispatcher = dispatcher
        // With dynamic sizing, the connections beyond `poolSize` exist from the start (their
        // metrics stay with them), inactive: no TCP connection until the pool grows.
        let resolutionRequests = self.resolutionRequests
        let standardMetrics = StandardMetrics(service: serviceID, endpoints: config.endpoints, factory: metricsFactory)
        self.standardMetrics = standardMetrics
        self.connections = try (0..<size).map { index in
            try PooledConnection(
                serviceID: serviceID,
                index: index,
                config: config,
                placement: placements[index],
                credentials: credentials,
                logger: logger,
                metricsFactory: metricsFactory,
                active: index < config.poolSize,
                dispatcher: dispatcher,
                events: events,
                clock: clock,
                standardMetrics: standardMetrics,
                onConnectFailure: { resolutionRequests.signal() }
            )
        }
    }

    /// Leases a connection for `body`; it is returned when `body` ends, throws or is cancelled.
    func withConnection<Result>(
        timeout: Duration?,
        _ body: (PooledConnection) async throws -> Result
    ) async throws -> Result {
        let connection = try await self.connection(waitingAtMost: timeout).connection
        defer { connection.unlease() }
        return try await body(connection)
    }

    /// A unary call on raw bytes on a picked connection.
    package func unary(
        method: String,
        request: [UInt8],
        metadata: Metadata = [:],
        options: CoreCallOptions? = nil
    ) async throws(RPCError) -> UnaryResponse {
        let start = ContinuousClock.now
        do throws(RPCError) {
            let slot = try await self.connection(waitingAtMost: options?.timeout)
            let response = try await slot.connection.unary(
                method: method,
                request: request,
                metadata: metadata,
                options: options,
                in: slot
            )
            self.standardMetrics.callEnded(
                method: StandardMetrics.unregisteredMethod,
                status: .ok,
                duration: .now - start
            )
            return response
        } catch {
            let code = Status.Code(error.code)
            self.standardMetrics.callEnded(
                method: StandardMetrics.unregisteredMethod,
                status: code,
                duration: .now - start
            )
            throw error
        }
    }

    // MARK: - State

    /// A snapshot of the pool and its connections.
    public func metrics() -> PoolMetrics {
        let connections = self.connections.map { $0.metrics() }
        var latency = LatencyHistogram()
        for connection in self.connections { latency.merge(connection.latencyHistogram) }
        let (rejected, queued) = self.dispatcher.state.withLock { ($0.rejected, $0.machine.queued) }
        return PoolMetrics(
            serviceID: self.serviceID,
            poolSize: connections.count { $0.isActive },
            healthyConnections: connections.filter(\.isHealthy).count,
            totalRequests: connections.reduce(0) { $0 + $1.totalRequests },
            successfulRequests: connections.reduce(0) { $0 + $1.successfulRequests },
            failedRequests: connections.reduce(0) { $0 + $1.failedRequests },
            rejectedRequests: rejected,
            queuedCalls: queued,
            inFlight: connections.reduce(0) { $0 + $1.inFlight },
            reconnects: connections.reduce(0) { $0 + $1.reconnects },
            averageResponseTime: latency.mean,
            p50ResponseTime: latency.percentile(0.5),
            p99ResponseTime: latency.percentile(0.99),
            connections: connections,
            addresses: self.addressBook.withLock { $0.addresses },
            resolutionFailures: self.addressBook.withLock { $0.failures }
        )
    }

    /// Checks every connection now; `true` when at least one is healthy.
    public func healthCheck() async -> Bool {
        let results = await self.checkConnections()
        return results.contains(true)
    }

    /// Checks every connection now and updates what the pool hands out; by index.
    public func checkConnections() async -> [Bool] {
        await withTaskGroup(of: (Int, Bool).self) { group in
            for connection in self.connections {
                group.addTask {
                    let probe = await connection.probe()
                    if probe != .healthy { connection.requestCheck() }
                    return (connection.index, probe == .healthy && connection.isHealthy)
                }
            }
            var results = Array(repeating: false, count: self.connections.count)
            for await (index, healthy) in group { results[index] = healthy }
            return results
        }
    }
}
