/// gRPC's standard client metrics as this library records them (``PoolManager``'s
/// `metricsFactory`): their swift-metrics labels are gRFC A66's instrument names
/// (`grpc.client.attempt.duration`, …), which an OpenTelemetry backend (swift-otel) exports as
/// they are. For a Prometheus backend, ``prometheus(_:_:)`` renames them the way OpenTelemetry's
/// Prometheus exporter does, and the bucket bounds below are A66's.
///
/// ```swift
/// var factory = PrometheusMetricsFactory(registry: registry)
/// factory.nameAndLabelSanitizer = GRPCMetricNames.prometheus
/// for name in GRPCMetricNames.latencyHistograms {
///     factory.durationHistogramBuckets[name] = GRPCMetricNames.latencyBuckets.map { .nanoseconds(Int64($0 * 1e9)) }
/// }
/// for name in GRPCMetricNames.sizeHistograms { factory.valueHistogramBuckets[name] = GRPCMetricNames.sizeBuckets }
/// ```
public enum GRPCMetricNames {
    /// A66's latency bucket bounds, in seconds.
    public static let latencyBuckets: [Double] = [
        0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01,
        0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65,
        0.8, 1, 2, 5, 10, 20, 50, 100,
    ]

    /// A66's size bucket bounds, in bytes.
    public static let sizeBuckets: [Double] = [
        0, 1024, 2048, 4096, 16384, 65536, 262_144, 1_048_576, 4_194_304, 16_777_216, 67_108_864, 268_435_456,
        1_073_741_824, 4_294_967_296,
    ]

    /// Each instrument's name under OpenTelemetry's Prometheus conventions: dots as
    /// underscores, the unit as a suffix (`_seconds`, `_bytes`), counters ending `_total`.
    public static let prometheusNames: [String: String] = [
        "grpc.client.attempt.started": "grpc_client_attempt_started_total",
        "grpc.client.attempt.duration": "grpc_client_attempt_duration_seconds",
        "grpc.client.attempt.sent_total_compressed_message_size":
            "grpc_client_attempt_sent_total_compressed_message_size_bytes",
        "grpc.client.attempt.rcvd_total_compressed_message_size":
            "grpc_client_attempt_rcvd_total_compressed_message_size_bytes",
        "grpc.client.call.duration": "grpc_client_call_duration_seconds",
        "grpc.client.attempt.delay.duration": "grpc_client_attempt_delay_duration_seconds",
        "grpc.lb.outlier_detection.ejections_enforced": "grpc_lb_outlier_detection_ejections_enforced_total",
        "grpc.subchannel.connection_attempts_succeeded": "grpc_subchannel_connection_attempts_succeeded_total",
        "grpc.subchannel.connection_attempts_failed": "grpc_subchannel_connection_attempts_failed_total",
        "grpc.subchannel.disconnections": "grpc_subchannel_disconnections_total",
        "grpc.subchannel.open_connections": "grpc_subchannel_open_connections",
    ]

    /// The Prometheus names of the latency histograms and of the size histograms.
    public static let latencyHistograms = [
        "grpc_client_attempt_duration_seconds", "grpc_client_call_duration_seconds",
        "grpc_client_attempt_delay_duration_seconds",
    ]
    public static let sizeHistograms = [
        "grpc_client_attempt_sent_total_compressed_message_size_bytes",
        "grpc_client_attempt_rcvd_total_compressed_message_size_bytes",
    ]

    /// A label and its dimensions as OpenTelemetry's Prometheus exporter names them: a standard
    /// instrument by ``prometheusNames``; every name and dimension with dots as underscores.
    @Sendable
    public static func prometheus(_ label: String, _ dimensions: [(String, String)]) -> (String, [(String, String)]) {
        let name = Self.prometheusNames[label] ?? Self.underscored(label)
        return (name, dimensions.map { (Self.underscored($0.0), $0.1) })
    }

    private static func underscored(_ text: String) -> String {
        String(text.map { $0 == "." ? "_" : $0 })
    }
}
