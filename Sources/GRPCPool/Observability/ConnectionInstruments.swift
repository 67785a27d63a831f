internal import CoreMetrics

/// The swift-metrics instruments of one pooled connection, made once with fixed dimensions
/// (`service`, `connection`), so any backend (Prometheus, StatsD, OpenTelemetry) gets them.
///
/// | metric | kind | meaning |
/// |---|---|---|
/// | `grpc_pool_rpcs_total{outcome="success"\|"failure"}` | counter | finished calls |
/// | `grpc_pool_rpc_duration_seconds` | timer | call latency |
/// | `grpc_pool_reconnects_total` | counter | times the connection came back or was replaced |
/// | `grpc_pool_connection_healthy` | gauge | 1 while the pool hands it out, else 0 |
/// | `grpc_pool_in_flight` | gauge | calls running on it (sampled every second) |
final class ConnectionInstruments: Sendable {
    let successes: Counter
    let failures: Counter
    let latency: Timer
    let reconnects: Counter
    let healthy: Gauge
    let inFlight: Gauge

    init(service: ServiceID, index: Int, factory: any MetricsFactory) {
        let dimensions = [("service", service.rawValue), ("connection", "\(index)")]
        self.successes = Counter(
            label: "grpc_pool_rpcs_total",
            dimensions: dimensions + [("outcome", "success")],
            factory: factory
        )
        self.failures = Counter(
            label: "grpc_pool_rpcs_total",
            dimensions: dimensions + [("outcome", "failure")],
            factory: factory
        )
        self.latency = Timer(label: "grpc_pool_rpc_duration_seconds", dimensions: dimensions, factory: factory)
        self.reconnects = Counter(label: "grpc_pool_reconnects_total", dimensions: dimensions, factory: factory)
        self.healthy = Gauge(label: "grpc_pool_connection_healthy", dimensions: dimensions, factory: factory)
        self.inFlight = Gauge(label: "grpc_pool_in_flight", dimensions: dimensions, factory: factory)
    }
}
