internal import CoreMetrics
internal import GRPCCore
internal import GRPCPoolCoreBridge

/// gRPC's standard client metrics (gRFC A66's per-attempt and per-call instruments, A121's
/// attempt delay, A91's outlier ejections) for one pool, through swift-metrics, under A66's names
/// and labels. With no metrics backend bootstrapped (swift-metrics' no-op factory), nothing is
/// recorded and each call pays one check.
final class StandardMetrics: Sendable {
    /// Whether a backend is there to record to.
    let enabled: Bool
    private let factory: any MetricsFactory
    /// `grpc.target`: the pool's endpoints, each in its canonical target form.
    private let target: String
    private let service: String
    private let instruments = Locked<[Key: Instruments]>([:])

    /// The method label of calls made through the pool's own raw API (no stub, no descriptor):
    /// A66's value for methods that are not registered.
    static let unregisteredMethod = "other"

    private struct Key: Hashable {
        var method: String
        var status: Status.Code?
        /// The call's instrument rather than the attempt's.
        var call = false
    }

    /// The instruments of one method (and, for those that carry it, one status).
    private struct Instruments: Sendable {
        var started: Counter?
        var attemptDuration: Timer?
        var sent: Recorder?
        var received: Recorder?
        var callDuration: Timer?
    }

    init(service: ServiceID, endpoints: [PoolManager.Endpoint], factory: any MetricsFactory) {
        self.enabled = !(factory is NOOPMetricsHandler)
        self.factory = factory
        self.service = service.rawValue
        self.target = endpoints.map { $0.target ?? "dns:///\($0.host):\($0.port)" }.joined(separator: ",")
    }

    /// `grpc.method` of a call to `method` (its path, or ``unregisteredMethod``): the path
    /// without its leading `/`.
    static func label(_ method: String) -> String {
        method.hasPrefix("/") ? String(method.dropFirst()) : method
    }

    private func dimensions(_ method: String, _ status: Status.Code? = nil) -> [(String, String)] {
        var dimensions = [
            ("grpc.method", Self.label(method)), ("grpc.target", self.target), ("grpc.pool.service", self.service),
        ]
        if let status { dimensions.append(("grpc.status", status.name)) }
        return dimensions
    }

    private func instruments(_ method: String, _ status: Status.Code?, call: Bool = false) -> Instruments {
        let key = Key(method: method, status: status, call: call)
        if let known = self.instruments.withLock({ $0[key] }) { return known }
        var made = Instruments()
        let factory = self.factory
        if let status, call {
            let labels = self.dimensions(method, status)
            made.callDuration = Timer(label: "grpc.client.call.duration", dimensions: labels, factory: factory)
        } else if let status {
            let labels = self.dimensions(method, status)
            made.attemptDuration = Timer(label: "grpc.client.attempt.duration", dimensions: labels, factory: factory)
            made.sent = Recorder(
                label: "grpc.client.attempt.sent_total_compressed_message_size",
                dimensions: labels,
                aggregate: true,
                factory: factory
            )
            made.received = Recorder(
                label: "grpc.client.attempt.rcvd_total_compressed_message_size",
                dimensions: labels,
                aggregate: true,
                factory: factory
            )
        } else {
            made.started = Counter(
                label: "grpc.client.attempt.started",
                dimensions: self.dimensions(method),
                factory: factory
            )
        }
        return self.instruments.withLock { $0[key, default: made] }
    }

    /// An attempt of `method` (a path, or ``unregisteredMethod``) began: `grpc.client.attempt.started`, and the time it waited for a connection
    /// (`grpc.client.attempt.delay.duration`), when it waited.
    func attemptStarted(method: String, delay: CallDispatcher.Delay?) {
        guard self.enabled else { return }
        self.instruments(method, nil).started?.increment()
        if let delay {
            var labels = self.dimensions(method)
            labels.append(("grpc.delay_type", delay.type))
            Timer(label: "grpc.client.attempt.delay.duration", dimensions: labels, factory: self.factory)
                .record(duration: delay.duration)
        }
    }

    /// An attempt ended with `status` after `duration` (from the start of its pick), having
    /// sent and received `sent` and `received` bytes of messages.
    func attemptEnded(method: String, status: Status.Code, duration: Duration, sent: Int, received: Int) {
        guard self.enabled else { return }
        let instruments = self.instruments(method, status)
        instruments.attemptDuration?.record(duration: duration)
        instruments.sent?.record(sent)
        instruments.received?.record(received)
    }

    /// A call (every attempt, and the waits between them) ended with `status` after `duration`.
    func callEnded(method: String, status: Status.Code, duration: Duration) {
        guard self.enabled else { return }
        self.instruments(method, status, call: true).callDuration?.record(duration: duration)
    }

    /// Outlier detection ejected a connection: `grpc.lb.outlier_detection.ejections_enforced`.
    func ejected(detectionMethod: String) {
        guard self.enabled else { return }
        Counter(
            label: "grpc.lb.outlier_detection.ejections_enforced",
            dimensions: [
                ("grpc.target", self.target), ("grpc.pool.service", self.service),
                ("grpc.lb.outlier_detection.detection_method", detectionMethod),
            ],
            factory: self.factory
        ).increment()
    }
}

extension Timer {
    /// Records `duration`, to the nanosecond.
    func record(duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
