internal import CoreMetrics
internal import GRPCCore
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
    /// gRPC's standard client metrics of the pool (``StandardMetrics``).
    let standardMetrics: StandardMetrics
    /// What the monitor hears: the pool's commands, timers, connectivity, and the results of its
    /// child tasks (``MonitorEvent``).
    let inbox: AsyncStream<MonitorEvent>.Continuation
    let inboxStream: AsyncStream<MonitorEvent>
    /// Where its calls are counted and its availability goes: the pool's machine.
    let dispatcher: CallDispatcher
    let events: PoolEventSink
    /// What the monitor's timers run on (``PoolClock``).
    let clock: any PoolClock
    /// The connection's state: its machine, its channel, the replacement connecting.
    let storage: Locked<State>
    /// The `GRPCClient` over this connection, made on first use.
    let clientStorage = Locked<CachedClient?>(nil)
    /// Called when a connection attempt fails: the pool looks its names up again.
    let onConnectFailure: @Sendable () -> Void

    struct State {
        var machine: StateMachine
        var channel: CoreChannel
        /// The replacement channel connecting now, and its attempt's id.
        var candidate: (id: Int, channel: CoreChannel)?
        var placement: Placement
        var generation = 0
        var connectivity = ChannelConnectivity.idle
        var stats = Stats()
        var connectedSince: ContinuousClock.Instant?
        var everConnected = false
        /// The last availability published to the pool's machine.
        var published = CallDispatcher.Machine.Availability(pickable: false, active: false, ejected: false, version: 0)
    }

    /// What the monitor counts (the calls' own counts are the dispatcher's).
    struct Stats {
        var reconnects = 0
        /// The latest failure the monitor found, and its text.
        var lastFailure: Failure?
        /// The pool's own RPCs (health checks, keepalive RPCs) started on one channel.
        var ownRPCs = OwnRPCs()
    }

    /// RPCs of the pool's own per channel, for the current channel and a replacement being
    /// probed (held weakly: it never keeps a channel alive). A probe of a candidate does not
    /// reset the current channel's count.
    struct OwnRPCs {
        struct Entry {
            weak var channel: CoreChannel?
            var count: Int
        }

        private var entries: [Entry] = []

        /// How many there were on `channel`.
        func count(on channel: CoreChannel) -> Int {
            self.entries.first { $0.channel === channel }?.count ?? 0
        }

        /// One more on `channel`. Channels that are gone are forgotten, and at most the two
        /// most recently counted are kept.
        mutating func add(on channel: CoreChannel) {
            self.entries.removeAll { $0.channel == nil }
            if let index = self.entries.firstIndex(where: { $0.channel === channel }) {
                self.entries[index].count += 1
                let entry = self.entries.remove(at: index)
                self.entries.append(entry)
                return
            }
            if self.entries.count >= 2 { self.entries.removeFirst() }
            self.entries.append(Entry(channel: channel, count: 1))
        }
    }

    init(
        serviceID: ServiceID,
        index: Int,
        config: PoolManager.ServiceConfig,
        placement: Placement,
        credentials: ChannelCredentials,
        logger: Logger,
        metricsFactory: any MetricsFactory,
        active: Bool = true,
        dispatcher: CallDispatcher,
        events: PoolEventSink,
        clock: any PoolClock = .continuous,
        standardMetrics: StandardMetrics? = nil,
        onConnectFailure: @escaping @Sendable () -> Void = {}
    ) throws {
        self.standardMetrics =
            standardMetrics
            ?? StandardMetrics(service: serviceID, endpoints: config.endpoints, factory: metricsFactory)
        self.events = events
        self.clock = clock
        self.dispatcher = dispatcher
        (self.inboxStream, self.inbox) = AsyncStream.makeStream(of: MonitorEvent.self)
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
        self.onConnectFailure = onConnectFailure
        let channel = try CoreChannel(
            target: placement.address,
            credentials: credentials,
            options: placement.channelOptions(self.options, tls: config.usesTLS)
        )
        let backoff = Backoff(
            initial: config.retryDelay,
            maximum: config.maxRetryDelay,
            fastAttempts: config.maxRetries
        )
        let machine = StateMachine(active: active, backoff: backoff)
        self.storage = Locked(State(machine: machine, channel: channel, placement: placement))
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
    public var isHealthy: Bool { self.storage.withLock { $0.machine.inRotation } }

    /// Calls and `withConnection` leases on it now.
    public var inFlight: Int { self.load }

    /// Its connectivity state as last reported by the core.
    public var state: ConnectionState { ConnectionState(self.storage.withLock { $0.connectivity }) }

    /// Calls plus `withConnection` leases: what least-in-flight balancing compares.
    package var load: Int { self.dispatcher.load(of: self.index) }

    /// Whether the outlier detector has taken it out of rotation.
    public var isEjected: Bool { self.storage.withLock { $0.machine.ejection != nil } }

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
    public var isActive: Bool { self.storage.withLock { $0.machine.active } }

    /// The channel calls go to now.
    package var channel: CoreChannel { self.storage.withLock { $0.channel } }

    /// A snapshot of its counters.
    public func metrics() -> ConnectionMetrics {
        let (state, stats, since, placement, machine, channel) = self.storage.withLock {
            ($0.connectivity, $0.stats, $0.connectedSince, $0.placement, $0.machine, $0.channel)
        }
        let calls = self.dispatcher.state.withLock { $0.stats[self.index] }
        return ConnectionMetrics(
            index: self.index,
            endpoint: placement.endpoint.description,
            address: placement.address,
            state: ConnectionState(state),
            isHealthy: machine.inRotation,
            totalRequests: calls.successes + calls.failures,
            successfulRequests: calls.successes,
            failedRequests: calls.failures,
            inFlight: self.inFlight,
            reconnects: stats.reconnects,
            isActive: machine.active,
            isEjected: machine.ejection != nil,
            ejections: machine.ejections,
            lastError: Self.latest(stats.lastFailure, calls.lastFailure)?.text,
            connectedSince: since,
            averageResponseTime: calls.latency.mean,
            p50ResponseTime: calls.latency.percentile(0.5),
            p99ResponseTime: calls.latency.percentile(0.99),
            channelzID: channel.channelzID,
            ownRPCs: stats.ownRPCs.count(on: channel)
        )
    }

    var latencyHistogram: LatencyHistogram { self.dispatcher.state.withLock { $0.stats[self.index].latency } }

    /// A failure: its error, its text for ``ConnectionMetrics/lastError``, and when it happened.
    struct Failure: Sendable {
        var error: any Error & Sendable
        var text: String
        var at: ContinuousClock.Instant
    }

    /// The latest failure on it, a call's or what the monitor found.
    var lastFailure: Failure? {
        let call = self.dispatcher.state.withLock { $0.stats[self.index].lastFailure }
        return Self.latest(self.storage.withLock { $0.stats.lastFailure }, call)
    }

    private static func latest(_ found: Failure?, _ call: (error: RPCError, at: ContinuousClock.Instant)?) -> Failure? {
        guard let call else { return found }
        guard let found, found.at > call.at else {
            return Failure(error: call.error, text: "\(call.error.code): \(call.error.message)", at: call.at)
        }
        return found
    }
}
