internal import CoreMetrics
package import GRPCCore
package import GRPCPoolCoreBridge
internal import Logging
internal import Synchronization

/// One connection of a pool: a core channel with its own TCP connection, its state, its health,
/// the calls in flight on it, and its metrics.
///
/// The pool replaces the channel underneath when it stops working; the `PooledConnection`
/// (its index, its metrics) stays.
public final class PooledConnection: Sendable {
    /// The service this connection belongs to.
    public let serviceID: ServiceID
    /// Its index in the pool.
    public let index: Int

    let config: PoolManager.ServiceConfig
    let credentials: ChannelCredentials
    let options: ChannelOptions
    let logger: Logger
    let instruments: ConnectionInstruments
    let healthy = Atomic<Bool>(false)
    let inFlightCalls = Atomic<Int>(0)
    let activeLeases = Atomic<Int>(0)
    let consecutiveFailures = Atomic<Int>(0)
    let ejected = Atomic<Bool>(false)
    let ejectionCount = Atomic<Int>(0)
    /// Whether it belongs to the pool's working set (dynamic sizing); inactive connections have
    /// no TCP connection and are never picked.
    let active: Atomic<Bool>
    /// What the pool tells the monitor to do: eject, activate, deactivate, move.
    let commands: AsyncStream<Command>.Continuation
    let commandStream: AsyncStream<Command>

    enum Command: Sendable {
        case eject
        case activate
        case deactivate
        /// It was placed on another address, away from `from`: connect there, make before break.
        case move(from: String)
    }
    let outlierDetector: OutlierDetector?
    let events: PoolEventSink
    /// What the monitor's timers run on (``PoolClock``).
    let clock: any PoolClock
    /// Recent latency for least-busy balancing (kept only under that policy).
    let latency = Locked(PeakEWMA())
    let storage: Locked<State>
    /// Tells the monitor to check at once (a call failed with UNAVAILABLE).
    let checkRequests: AsyncStream<Void>.Continuation
    let checkRequestStream: AsyncStream<Void>
    /// The `GRPCClient` over this connection, made on first use.
    let clientStorage = Locked<CachedClient?>(nil)
    /// Called whenever `isHealthy` or the load changes, so waiting callers can look again.
    let onChangeHandler: @Sendable () -> Void
    /// Called when a connection attempt fails: the pool looks its names up again.
    let onConnectFailure: @Sendable () -> Void
    /// Signalled with `onChangeHandler`: what a drain of this connection waits on.
    let changes = ChangeSignal()

    struct State {
        var channel: CoreChannel
        var placement: Placement
        var generation = 0
        var connectivity = ChannelConnectivity.idle
        var stats = Stats()
        var connectedSince: ContinuousClock.Instant?
        var everConnected = false
    }

    struct Stats {
        var successes = 0
        var failures = 0
        var reconnects = 0
        /// The latest failure: a call's error, or what the monitor found.
        var lastFailure: (error: any Error & Sendable, text: String, at: ContinuousClock.Instant)?
        var latency = LatencyHistogram()
    }

    init(
        serviceID: ServiceID,
        index: Int,
        config: PoolManager.ServiceConfig,
        placement: Placement,
        credentials: ChannelCredentials,
        logger: Logger,
        metricsFactory: any MetricsFactory,
        outlierDetector: OutlierDetector? = nil,
        active: Bool = true,
        events: PoolEventSink,
        clock: any PoolClock = .continuous,
        onChange: @escaping @Sendable () -> Void,
        onConnectFailure: @escaping @Sendable () -> Void = {}
    ) throws {
        self.events = events
        self.clock = clock
        self.outlierDetector = outlierDetector
        self.active = Atomic(active)
        (self.commandStream, self.commands) = AsyncStream.makeStream(of: Command.self)
        self.serviceID = serviceID
        self.index = index
        self.config = config
        self.credentials = credentials
        self.options = config.channelOptions()
        var logger = logger
        logger[metadataKey: "grpc.pool.connection"] = "\(index)"
        logger[metadataKey: "grpc.pool.endpoint"] = "\(placement.endpoint)"
        self.logger = logger
        self.instruments = ConnectionInstruments(service: serviceID, index: index, factory: metricsFactory)
        self.onChangeHandler = onChange
        self.onConnectFailure = onConnectFailure
        let channel = try CoreChannel(
            target: placement.address,
            credentials: credentials,
            options: placement.channelOptions(self.options, tls: config.usesTLS)
        )
        self.storage = Locked(State(channel: channel, placement: placement))
        (self.checkRequestStream, self.checkRequests) = AsyncStream.makeStream(
            of: Void.self,
            bufferingPolicy: .bufferingNewest(1)
        )
    }

    /// The endpoint it belongs to, as configured.
    public var endpoint: PoolManager.Endpoint { self.placement.endpoint }

    /// The address it connects to: one of those its endpoint names (``PoolManager/Discovery``).
    public var address: String { self.placement.address }

    /// Where it goes now.
    var placement: Placement { self.storage.withLock { $0.placement } }

    /// The remote peer every RPC's `ClientContext` names.
    var peer: String { self.placement.address }

    /// Whether the pool hands this connection out.
    public var isHealthy: Bool { self.healthy.load(ordering: .relaxed) }

    /// Calls running on it now.
    public var inFlight: Int { self.inFlightCalls.load(ordering: .relaxed) }

    /// Its connectivity state as last reported by the core.
    public var state: ConnectionState { ConnectionState(self.storage.withLock { $0.connectivity }) }

    /// Calls plus `withConnection` leases: what least-in-flight balancing compares.
    /// (Sequentially consistent with ``reserve()`` and ``deactivate()``: a drain that reads 0
    /// here cannot miss a call the pool has just handed this connection to.)
    package var load: Int {
        self.inFlightCalls.load(ordering: .sequentiallyConsistent)
            + self.activeLeases.load(ordering: .sequentiallyConsistent)
    }

    /// Recent latency in milliseconds for least-busy balancing; `nil` before its first call ends.
    func latencyEstimate(at now: ContinuousClock.Instant) -> Double? {
        self.latency.withLock { $0.hasSamples ? $0.estimate(at: now).milliseconds : nil }
    }

    /// Calls in a row that failed with UNAVAILABLE or DEADLINE_EXCEEDED.
    var failuresInARow: Int { self.consecutiveFailures.load(ordering: .relaxed) }

    /// Whether the outlier detector has taken it out of rotation.
    public var isEjected: Bool { self.ejected.load(ordering: .relaxed) }

    /// Takes it out of rotation and tells the monitor (which replaces the channel and restores
    /// the connection after the ejection time). Called by the ``OutlierDetector``, under its lock.
    func eject() {
        guard self.ejected.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        self.ejectionCount.add(1, ordering: .relaxed)
        self.setHealthy(false)
        self.commands.yield(.eject)
    }

    /// Tells the pool's observers that `kind` happened to this connection.
    func emit(_ kind: PoolEvent.Kind) {
        let placement = self.placement
        self.events.emit(
            kind,
            connection: self.index,
            endpoint: placement.endpoint.description,
            address: placement.address
        )
    }

    /// Whether it is in the pool's working set now.
    public var isActive: Bool { self.active.load(ordering: .relaxed) }

    /// Brings it into the working set: the monitor connects it, and it is picked once healthy.
    func activate() {
        guard self.active.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        self.commands.yield(.activate)
    }

    /// Takes it out of the working set: no new calls; the monitor closes its channel once the
    /// calls on it have finished.
    func deactivate() {
        guard self.active.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged
        else {
            return
        }
        self.setHealthy(false)
        self.commands.yield(.deactivate)
    }

    /// Ends an ejection: the failure streak starts over.
    func endEjection() {
        self.consecutiveFailures.store(0, ordering: .relaxed)
        self.ejected.store(false, ordering: .relaxed)
    }

    /// The channel calls go to now.
    package var channel: CoreChannel { self.storage.withLock { $0.channel } }

    /// A snapshot of its counters.
    public func metrics() -> ConnectionMetrics {
        let (state, stats, since, placement) = self.storage.withLock {
            ($0.connectivity, $0.stats, $0.connectedSince, $0.placement)
        }
        return ConnectionMetrics(
            index: self.index,
            endpoint: placement.endpoint.description,
            address: placement.address,
            state: ConnectionState(state),
            isHealthy: self.isHealthy,
            totalRequests: stats.successes + stats.failures,
            successfulRequests: stats.successes,
            failedRequests: stats.failures,
            inFlight: self.inFlight,
            reconnects: stats.reconnects,
            isActive: self.isActive,
            isEjected: self.isEjected,
            ejections: self.ejectionCount.load(ordering: .relaxed),
            lastError: stats.lastFailure?.text,
            connectedSince: since,
            averageResponseTime: stats.latency.mean,
            p50ResponseTime: stats.latency.percentile(0.5),
            p99ResponseTime: stats.latency.percentile(0.99)
        )
    }

    var latencyHistogram: LatencyHistogram { self.storage.withLock { $0.stats.latency } }

    /// The latest failure on it, with when it happened.
    var lastFailure: (error: any Error & Sendable, at: ContinuousClock.Instant)? {
        self.storage.withLock { state in state.stats.lastFailure.map { ($0.error, $0.at) } }
    }
}
