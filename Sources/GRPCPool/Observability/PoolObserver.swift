internal import CoreMetrics

/// Receives every event of the pools of a ``PoolManager``, as it happens.
///
/// ```swift
/// struct Audit: PoolObserver {
///     func handle(_ event: PoolEvent) { print(event) }
/// }
/// let manager = try PoolManager(services: services, observers: [Audit()])
/// ```
///
/// `handle(_:)` runs on the task or thread where the event happened (a connection's monitor, the
/// pool's sizing loop): return quickly, and hand anything slow to a task of your own.
public protocol PoolObserver: Sendable {
    func handle(_ event: PoolEvent)
}

/// Something that happened to a pool or one of its connections.
public struct PoolEvent: Sendable, Hashable, CustomStringConvertible {
    /// The pool's service.
    public var service: ServiceID
    /// The connection's index, for connection events.
    public var connection: Int?
    /// The connection's endpoint (as configured), for connection events.
    public var endpoint: String?
    /// The connection's address (one of those its endpoint names), for connection events.
    public var address: String?
    public var kind: Kind

    public enum Kind: Sendable, Hashable {
        /// A connection starts connecting (at start, when activated, or a replacement channel).
        case connecting
        /// It is connected (ready).
        case connected
        /// A connection attempt failed, or a check found it unusable.
        case failed(reason: String)
        /// A connected connection lost its connection.
        case disconnected(reason: String)
        /// Outlier detection took it out of rotation after `failures` failed calls in a row, for
        /// `ejectionTime`.
        case ejected(failures: Int, ejectionTime: Duration)
        /// Back in rotation after an ejection.
        case restored
        /// Its channel was replaced by a new, connected one: at `maxConnectionAge`, after an
        /// ejection, or because the old one stopped answering.
        case refreshed(reason: String)
        /// It left the pool's working set and its calls have finished; its channel is closed.
        case drained
        /// It was closed with the pool.
        case closed
        /// The pool's working set changed size (dynamic sizing); `demand` is the calls in flight
        /// and waiting that decided it.
        case resized(from: Int, to: Int, demand: Int)
        /// Calls waiting for a connection with room, when that number changed (sampled each
        /// second).
        case queueDepth(Int)
        /// A lookup of `endpoint`'s name found `addresses`: the first lookup, and every one that
        /// found something else than the last.
        case resolved(endpoint: String, addresses: [String])
        /// A lookup of `endpoint`'s name failed or found nothing; the pool keeps the addresses
        /// it had.
        case resolutionFailed(endpoint: String, reason: String)
        /// The connection moved to `address` from `from` (the addresses changed): a new channel
        /// took the place of the old one, which finishes its calls.
        case moved(from: String, to: String)
    }

    public var description: String {
        let subject =
            self.connection.map { "\(self.service)[\($0)] \(self.address ?? self.endpoint ?? "")" } ?? "\(self.service)"
        return "\(subject): \(self.kind)"
    }
}

/// Where a pool's components send their events: the observers the application gave, and the
/// pool's own recorders (its log lines and its A94 subchannel metrics).
struct PoolEventSink: Sendable {
    let service: ServiceID
    let observers: [any PoolObserver]

    func emit(_ kind: PoolEvent.Kind, connection: Int? = nil, endpoint: String? = nil, address: String? = nil) {
        let event = PoolEvent(
            service: self.service,
            connection: connection,
            endpoint: endpoint,
            address: address,
            kind: kind
        )
        for observer in self.observers { observer.handle(event) }
    }
}

/// Records connection events as gRPC's A94 subchannel metrics (the names gRPC's OpenTelemetry
/// plugin uses), with the labels `grpc.target` (the endpoint), `service` and `connection`:
///
/// | metric | kind | counts |
/// |---|---|---|
/// | `grpc.subchannel.connection_attempts_succeeded` | counter | connections made (new channels included) |
/// | `grpc.subchannel.connection_attempts_failed` | counter | connection attempts that failed |
/// | `grpc.subchannel.disconnections` | counter | connected connections lost |
/// | `grpc.subchannel.open_connections` | gauge | 1 while the connection is open, else 0 |
final class SubchannelMetrics: PoolObserver {
    private struct Instruments {
        let succeeded: Counter
        let failed: Counter
        let disconnections: Counter
        let open: Gauge
    }

    private let instruments: [Int: Instruments]

    init(service: ServiceID, endpoints: [Int: String], factory: any MetricsFactory) {
        var instruments: [Int: Instruments] = [:]
        for (index, endpoint) in endpoints {
            let labels = [("grpc.target", endpoint), ("service", service.rawValue), ("connection", "\(index)")]
            instruments[index] = Instruments(
                succeeded: Counter(
                    label: "grpc.subchannel.connection_attempts_succeeded",
                    dimensions: labels,
                    factory: factory
                ),
                failed: Counter(
                    label: "grpc.subchannel.connection_attempts_failed",
                    dimensions: labels,
                    factory: factory
                ),
                disconnections: Counter(label: "grpc.subchannel.disconnections", dimensions: labels, factory: factory),
                open: Gauge(label: "grpc.subchannel.open_connections", dimensions: labels, factory: factory)
            )
        }
        self.instruments = instruments
    }

    func handle(_ event: PoolEvent) {
        guard let index = event.connection, let instruments = self.instruments[index] else { return }
        switch event.kind {
        case .connected, .refreshed:
            instruments.succeeded.increment()
            instruments.open.record(1)
        case .failed:
            instruments.failed.increment()
        case .disconnected:
            instruments.disconnections.increment()
            instruments.open.record(0)
        case .drained, .closed:
            instruments.open.record(0)
        case .connecting, .ejected, .restored, .resized, .queueDepth, .resolved, .resolutionFailed, .moved:
            break
        }
    }
}
