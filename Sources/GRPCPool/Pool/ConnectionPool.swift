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
    private let cursor = Atomic<Int>(0)
    private let rejected = Atomic<Int>(0)
    private let queued = Atomic<Int>(0)
    private let waiting = Atomic<Int>(0)
    private let state: Locked<State>
    private let changes: ChangeSignal
    /// Signalled when shutdown begins: what ``run()`` waits for while the pool is open (the
    /// `changes` of every call would wake it for nothing).
    private let lifecycleChanges = ChangeSignal()
    private let outlierDetector: OutlierDetector?
    private let events: PoolEventSink
    let clientStorage = Locked<CachedClient<Transport>?>(nil)

    private struct State {
        enum Lifecycle {
            case open
            case draining
            case closed
        }
        var lifecycle = Lifecycle.open
    }

    init(
        serviceID: ServiceID,
        config: PoolManager.ServiceConfig,
        logger: Logger,
        metricsFactory: any MetricsFactory,
        observers: [any PoolObserver] = []
    ) throws {
        self.serviceID = serviceID
        self.config = config
        var logger = logger
        logger[metadataKey: "grpc.pool.service"] = "\(serviceID)"
        self.logger = logger
        let changes = ChangeSignal()
        self.changes = changes
        self.state = Locked(State())
        let credentials = try config.credentials()
        let size = max(config.poolSize, config.maxConnections ?? 0)
        let subchannelMetrics = SubchannelMetrics(
            service: serviceID,
            endpoints: Dictionary(
                uniqueKeysWithValues: (0..<size).map { ($0, config.endpoint(forConnection: $0).description) }
            ),
            factory: metricsFactory
        )
        let events = PoolEventSink(
            service: serviceID,
            observers: observers + [PoolEventLogger(logger: logger), subchannelMetrics]
        )
        self.events = events
        let detector = config.outlierDetection.map(OutlierDetector.init(settings:))
        self.outlierDetector = detector
        // With dynamic sizing, the connections beyond `poolSize` exist from the start (their
        // metrics stay with them), inactive: no TCP connection until the pool grows.
        self.connections = try (0..<size).map { index in
            try PooledConnection(
                serviceID: serviceID,
                index: index,
                config: config,
                credentials: credentials,
                logger: logger,
                metricsFactory: metricsFactory,
                outlierDetector: detector,
                active: index < config.poolSize,
                events: events,
                onChange: { changes.signal() }
            )
        }
        detector?.attach(self.connections)
    }

    // MARK: - Picking

    /// What picking found.
    enum Pick {
        /// A healthy connection with room.
        case connection(PooledConnection)
        /// Healthy connections exist, but every one is at `streamCapacity`.
        case allAtCapacity
        /// No connection is healthy.
        case noneHealthy
    }

    /// A healthy connection with room under the balancing policy.
    func pickHealthy() -> Pick {
        let count = self.connections.count
        let start = self.cursor.wrappingAdd(1, ordering: .relaxed).oldValue
        var sawHealthy = false
        switch self.config.balancing.value {
        case .roundRobin:
            for offset in 0..<count {
                let connection = self.connections[(start &+ offset) % count]
                guard connection.isHealthy else { continue }
                sawHealthy = true
                if connection.hasRoom { return .connection(connection) }
            }
        case .leastInFlight:
            // Start at a rotating index so that ties spread.
            var best: PooledConnection?
            var bestLoad = Int.max
            for offset in 0..<count {
                let connection = self.connections[(start &+ offset) % count]
                guard connection.isHealthy else { continue }
                sawHealthy = true
                let load = connection.load
                if load < bestLoad && load < self.config.streamCapacity {
                    best = connection
                    bestLoad = load
                }
            }
            if let best { return .connection(best) }
        case .leastBusy:
            // Power of two choices: two different candidates, each the first healthy connection
            // with room from a random place; the one with the lower cost wins.
            var mixer = SplitMix64(seed: UInt64(truncatingIfNeeded: start))
            let random = mixer.next()
            let first = self.firstAvailable(from: Int(random % UInt64(count)))
            guard let first else { break }
            sawHealthy = true
            guard count > 1 else { return .connection(first) }
            let secondStart = first.index + 1 + Int((random >> 32) % UInt64(count - 1))
            guard let second = self.firstAvailable(from: secondStart), second !== first else {
                return .connection(first)
            }
            let now = ContinuousClock.now
            let firstWins = Self.lessBusy(
                (first.latencyEstimate(at: now), first.load),
                than: (second.latencyEstimate(at: now), second.load)
            )
            return .connection(firstWins ? first : second)
        }
        if !sawHealthy {
            sawHealthy = self.connections.contains { $0.isHealthy }
        }
        return sawHealthy ? .allAtCapacity : .noneHealthy
    }

    /// Least-busy's comparison: busy is the expected wait of one more call, (load + 1) × recent
    /// latency (in milliseconds, at least a microsecond, so that where latencies are equal or zero
    /// load decides). A connection whose first call has not ended yet counts as fast as the
    /// other: load decides between them, rather than an unknown latency passing for none (which
    /// drew every pick to a new connection, slow or not, until its first call came back).
    static func lessBusy(_ a: (latency: Double?, load: Int), than b: (latency: Double?, load: Int)) -> Bool {
        let latencyA = max(a.latency ?? b.latency ?? 0, 0.001)
        let latencyB = max(b.latency ?? a.latency ?? 0, 0.001)
        return latencyA * Double(a.load + 1) <= latencyB * Double(b.load + 1)
    }

    /// The first healthy connection with room at or after `index`, wrapping around.
    private func firstAvailable(from index: Int) -> PooledConnection? {
        let count = self.connections.count
        for offset in 0..<count {
            let connection = self.connections[(index + offset) % count]
            if connection.isHealthy && connection.hasRoom { return connection }
        }
        return nil
    }

    /// A connection for one call or lease, under the policy for when none is healthy.
    ///
    /// When every healthy connection is at `streamCapacity`, the call waits for room (up to
    /// `timeout`) among at most `maxQueuedCalls` others; past that bound it fails at once.
    ///
    /// The connection comes reserved for the caller (``PooledConnection/reserve()``): start the
    /// call with `reserved: true`, or turn the reservation into a lease (`leaseReserved()`).
    ///
    /// - Parameter timeout: how long to wait (the call's deadline).
    /// - Throws: `RPCError` `.unavailable` (fail fast), `.failedPrecondition` (shutting down),
    ///   `.resourceExhausted` (the queue is full) or `.deadlineExceeded` (waited until the deadline).
    func connection(waitingAtMost timeout: Duration?) async throws(RPCError) -> PooledConnection {
        do {
            return try await self.pick(waitingAtMost: timeout)
        } catch {
            self.rejected.add(1, ordering: .relaxed)
            throw error
        }
    }

    private func pick(waitingAtMost timeout: Duration?) async throws(RPCError) -> PooledConnection {
        try self.checkOpen()
        let found = self.pickHealthy()
        if case .connection(let connection) = found, connection.reserve() { return connection }
        if case .noneHealthy = found {
            switch self.config.whenNoneHealthy.value {
            case .failFast:
                throw self.noneHealthy()
            case .useAnyConnection:
                while true {
                    let active = self.connections.filter(\.isActive)
                    let index = self.cursor.wrappingAdd(1, ordering: .relaxed).oldValue
                    let connection = active[index % active.count]
                    if connection.reserve() { return connection }
                }
            case .waitUntilDeadline:
                break
            }
        }

        // The wait runs beside one timer for its whole length (not one per wake-up: a cancelled
        // Task.sleep holds its memory until its deadline), and whichever ends first ends the other.
        let deadline = ContinuousClock.now.advanced(by: timeout ?? self.config.timeout)
        self.waiting.add(1, ordering: .relaxed)
        defer { self.waiting.subtract(1, ordering: .relaxed) }
        do {
            return try await withThrowingTaskGroup(of: PooledConnection?.self) { group in
                group.addTask {
                    try await Task.sleep(until: deadline, clock: .continuous)
                    return nil
                }
                group.addTask { try await self.waitForRoom(until: deadline) }
                defer { group.cancelAll() }
                while let result = try await group.next() {
                    if let connection = result { return connection }
                    // The deadline passed: the waiting loop, cancelled, throws DEADLINE_EXCEEDED
                    // (or returns the connection it reserved just before).
                    group.cancelAll()
                }
                throw RPCError(code: .internalError, message: "the wait for a connection ended without an outcome")
            }
        } catch let error as RPCError {
            throw error
        } catch {
            throw RPCError(code: .cancelled, message: "cancelled while waiting for a connection")
        }
    }

    /// Waits for a connection with room: counted among the queued calls while all are full (and
    /// refused past `maxQueuedCalls`), woken by every change of health or load.
    private func waitForRoom(until deadline: ContinuousClock.Instant) async throws(RPCError) -> PooledConnection {
        var queued = false
        defer { if queued { self.queued.subtract(1, ordering: .relaxed) } }
        while true {
            let observed = self.changes.generation
            let found = self.pickHealthy()
            switch found {
            case .connection(let connection):
                // Not reserved only if it left the working set just now; look again at once.
                if connection.reserve() { return connection }
                continue
            case .allAtCapacity where !queued:
                let waiting = self.queued.wrappingAdd(1, ordering: .relaxed).newValue
                queued = true
                guard waiting <= self.config.maxQueuedCalls else { throw self.saturated() }
            case .allAtCapacity, .noneHealthy:
                break
            }
            try self.checkOpen()
            guard ContinuousClock.now < deadline else { throw self.expired(found) }
            do {
                try await self.changes.wait(after: observed)
            } catch {
                // Cancelled: by the timer at the deadline, or by the caller.
                if ContinuousClock.now >= deadline { throw self.expired(found) }
                throw RPCError(code: .cancelled, message: "cancelled while waiting for a connection")
            }
        }
    }

    /// DEADLINE_EXCEEDED for a call that waited in vain: saturation or no healthy connection.
    private func expired(_ found: Pick) -> RPCError {
        if case .allAtCapacity = found {
            return RPCError(
                code: .deadlineExceeded,
                message: "no connection to '\(self.serviceID)' had room before the deadline"
                    + " (\(self.connections.count) × streamCapacity \(self.config.streamCapacity))",
                cause: self.saturation
            )
        }
        var error = self.noneHealthy()
        error.code = .deadlineExceeded
        return error
    }

    /// Calls waiting for a connection now: for one to become healthy, or for room.
    package var waitingCalls: Int { self.waiting.load(ordering: .relaxed) }

    /// ``connection(waitingAtMost:)`` as a `Result`.
    func connectionResult(waitingAtMost timeout: Duration?) async -> Result<PooledConnection, RPCError> {
        do {
            return .success(try await self.connection(waitingAtMost: timeout))
        } catch {
            return .failure(error)
        }
    }

    private func checkOpen() throws(RPCError) {
        let open = self.state.withLock { $0.lifecycle == .open }
        guard open else { throw Refusal.shuttingDown(self.serviceID) }
    }

    private func saturated() -> RPCError {
        RPCError(
            code: .resourceExhausted,
            message: "the pool for '\(self.serviceID)' is saturated: every connection carries"
                + " streamCapacity (\(self.config.streamCapacity)) calls and maxQueuedCalls"
                + " (\(self.config.maxQueuedCalls)) calls are waiting",
            cause: self.saturation
        )
    }

    /// The cause of both saturation errors: shed at once, or no room before the deadline.
    private var saturation: GRPCPoolError {
        GRPCPoolError(code: .saturated, message: "pool '\(self.serviceID)' is saturated")
    }

    /// UNAVAILABLE naming the endpoints and the latest connection error, which is also the
    /// cause of its `GRPCPoolError`.
    private func noneHealthy() -> RPCError {
        let lastFailure = self.connections.compactMap(\.lastFailure).max { $0.at < $1.at }?.error
        let endpoints = Set(self.connections.map { $0.endpoint.description }).sorted().joined(separator: ", ")
        return RPCError(
            code: .unavailable,
            message: "no healthy connection to '\(self.serviceID)' (\(endpoints))"
                + (lastFailure.map { "; last error: \($0)" } ?? ""),
            cause: GRPCPoolError(
                code: .noHealthyConnection,
                message: "no healthy connection to '\(self.serviceID)'",
                cause: lastFailure
            )
        )
    }

    /// Leases a connection for `body`; it is returned when `body` ends, throws or is cancelled.
    func withConnection<Result>(
        timeout: Duration?,
        _ body: (PooledConnection) async throws -> Result
    ) async throws -> Result {
        let connection = try await self.connection(waitingAtMost: timeout)
        connection.leaseReserved()
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
        let connection = try await self.connection(waitingAtMost: options?.timeout)
        return try await connection.unary(
            method: method,
            request: request,
            metadata: metadata,
            options: options,
            reserved: true
        )
    }

    // MARK: - State

    /// A snapshot of the pool and its connections.
    public func metrics() -> PoolMetrics {
        let connections = self.connections.map { $0.metrics() }
        var latency = LatencyHistogram()
        for connection in self.connections { latency.merge(connection.latencyHistogram) }
        return PoolMetrics(
            serviceID: self.serviceID,
            poolSize: connections.count { $0.isActive },
            healthyConnections: connections.filter(\.isHealthy).count,
            totalRequests: connections.reduce(0) { $0 + $1.totalRequests },
            successfulRequests: connections.reduce(0) { $0 + $1.successfulRequests },
            failedRequests: connections.reduce(0) { $0 + $1.failedRequests },
            rejectedRequests: self.rejected.load(ordering: .relaxed),
            queuedCalls: self.queued.load(ordering: .relaxed),
            inFlight: connections.reduce(0) { $0 + $1.inFlight },
            reconnects: connections.reduce(0) { $0 + $1.reconnects },
            averageResponseTime: latency.mean,
            p50ResponseTime: latency.percentile(0.5),
            p99ResponseTime: latency.percentile(0.99),
            connections: connections
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

    // MARK: - Lifecycle

    /// Connects every connection, then watches them until ``beginGracefulShutdown()`` (which
    /// drains the calls in flight, then closes the channels) or cancellation (which closes at once).
    func run(metricsLogInterval: Duration? = nil) async {
        self.logger.info(
            "pool starting",
            metadata: [
                "grpc.pool.size": "\(self.connections.count)", "grpc.pool.balancing": "\(self.config.balancing)",
            ]
        )
        var drained = false
        await withDiscardingTaskGroup { group in
            for connection in self.connections {
                group.addTask { await connection.monitor() }
            }
            group.addTask { await self.sampleGauges() }
            if let maximum = self.config.maxConnections, maximum > self.config.poolSize {
                group.addTask { await self.resize(upTo: maximum) }
            }
            if let metricsLogInterval {
                group.addTask { await self.logMetrics(every: metricsLogInterval) }
            }
            drained = await self.waitUntilDrained()
            group.cancelAll()
        }
        // After a graceful drain, the calls have ended but the core objects of the last ones may
        // still be on their way out (the poller lets go of a call just after resuming its caller):
        // close each channel once they are gone, all at once. Cancelled: close at once.
        let gracefully = drained
        await withDiscardingTaskGroup { group in
            for connection in self.connections {
                group.addTask {
                    if gracefully { await connection.channel.drainAndClose(timeLimit: self.config.timeout) }
                    connection.close()
                }
            }
        }
        // The outlier detector refers to the connections: let go of them, so that the pool, its
        // channels and the core can be released.
        self.outlierDetector?.detach()
        self.state.withLock { $0.lifecycle = .closed }
        self.changes.signal()
        self.logger.info("pool shut down")
    }

    /// Stops handing out connections; ``run()`` returns once the calls in flight have finished.
    func beginGracefulShutdown() {
        let started = self.state.withLock { state -> Bool in
            guard state.lifecycle == .open else { return false }
            state.lifecycle = .draining
            return true
        }
        if started {
            self.clientStorage.withLock { $0?.transport.beginGracefulShutdown() }
            self.logger.info("pool draining", metadata: ["grpc.pool.in_flight": "\(self.totalLoad)"])
            self.changes.signal()
            self.lifecycleChanges.signal()
        }
    }

    private var totalLoad: Int { self.connections.reduce(0) { $0 + $1.load } }

    /// One metrics line for this pool, every `interval`:
    ///
    /// ```
    /// info grpc.pool: grpc.pool.service=stt requests=1520 success_rate=0.998 avg_ms=1.92 p50_ms=1.80
    ///   p99_ms=5.10 in_flight=4 healthy=3/3 reconnects=1 [GRPCPool] pool metrics
    /// ```
    private func logMetrics(every interval: Duration) async {
        while true {
            do { try await Task.sleep(for: interval) } catch { return }
            let metrics = self.metrics()
            self.logger.info(
                "pool metrics",
                metadata: [
                    "requests": "\(metrics.totalRequests)",
                    "success_rate": "\(String(format: "%.3f", metrics.successRate))",
                    "avg_ms": "\(String(format: "%.2f", metrics.averageResponseTime.milliseconds))",
                    "p50_ms": "\(String(format: "%.2f", metrics.p50ResponseTime.milliseconds))",
                    "p99_ms": "\(String(format: "%.2f", metrics.p99ResponseTime.milliseconds))",
                    "in_flight": "\(metrics.inFlight)",
                    "healthy": "\(metrics.healthyConnections)/\(metrics.poolSize)",
                    "reconnects": "\(metrics.reconnects)",
                ]
            )
        }
    }

    /// Dynamic sizing (``PoolManager/Scaling``): every `scaling.interval`, one reading of the
    /// demand goes to the ``Scaler``, and its decision is carried out.
    private func resize(upTo maximum: Int) async {
        var scaler = Scaler(minimum: self.config.poolSize, maximum: maximum, scaling: self.config.scaling)
        while true {
            do { try await Task.sleep(for: self.config.scaling.interval) } catch { return }
            let active = self.connections.filter(\.isActive)
            let demand = active.reduce(0) { $0 + $1.load } + self.queued.load(ordering: .relaxed)
            switch scaler.reading(demand: demand, active: active.count, at: .now) {
            case .stay:
                break
            case .grow(let target):
                let added = self.connections.filter { !$0.isActive }.prefix(target - active.count)
                for connection in added { connection.activate() }
                self.events.emit(.resized(from: active.count, to: active.count + added.count, demand: demand))
            case .shrink(let target):
                guard let last = active.last else { break }
                last.deactivate()
                self.events.emit(.resized(from: active.count, to: target, demand: demand))
            }
        }
    }

    /// Samples the in-flight gauges every second (cheaper than updating them on every call), and
    /// reports the queue depth when it changed.
    private func sampleGauges() async {
        var queueDepth = 0
        while !Task.isCancelled {
            for connection in self.connections { connection.instruments.inFlight.record(connection.inFlight) }
            let queued = self.queued.load(ordering: .relaxed)
            if queued != queueDepth {
                queueDepth = queued
                self.events.emit(.queueDepth(queued))
            }
            do { try await Task.sleep(for: .seconds(1)) } catch { return }
        }
    }

    /// Returns `true` once shutdown has begun and no call or lease is left, `false` when cancelled
    /// (then the pool closes at once). While the pool is open it sleeps until shutdown begins;
    /// after that, every call that ends signals `changes`, so it looks again exactly when the load
    /// may have dropped. Neither wait has a deadline: a waiting task costs nothing until it is woken.
    private func waitUntilDrained() async -> Bool {
        do {
            while true {
                let observed = self.lifecycleChanges.generation
                if self.state.withLock({ $0.lifecycle != .open }) { break }
                try await self.lifecycleChanges.wait(after: observed)
            }
            while true {
                let observed = self.changes.generation
                if self.totalLoad == 0 { return true }
                try await self.changes.wait(after: observed)
            }
        } catch {
            return false
        }
    }
}
