import GRPCCore
import GRPCPool
import Prometheus
import ServiceLifecycle
import Tracing

#if GRPC_POOL_OTEL
import OTel
#endif

extension BenchSession {
    /// What observability costs a call: the pool stub on the defaults, plain (no metrics backend,
    /// no tracer), with a Prometheus registry behind swift-metrics (the pool's series and gRPC's
    /// standard ones, as the example app sets it up), and with that and swift-otel's tracer (every
    /// attempt sampled into its batch processor; exporter none, so that the export's own network
    /// work is not counted). Two plain rows around the others, so that drift shows.
    func observabilityRows() async throws {
        let endpoint = PoolManager.Endpoint(host: "127.0.0.1", port: self.server.port)
        let config = BenchSettings.defaults.config(endpoints: [endpoint], connections: self.options.connections)
        let options = BenchSettings.defaults.callOptions(retries: false)
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.nameAndLabelSanitizer = GRPCMetricNames.prometheus
        let measured = try PoolManager(
            services: ["bench-observed": config],
            logger: .cli(verbose: false),
            metricsFactory: factory
        )
        let running = Task { try await measured.run() }
        defer {
            measured.beginGracefulShutdown()
            running.cancel()
        }
        _ = await measured.waitUntilHealthy(timeLimit: .seconds(10))
        let observed = try measured.client(for: "bench-observed")

        #if GRPC_POOL_OTEL
        var otel = OTel.Configuration.default
        otel.serviceName = "grpc-pool-bench"
        otel.metrics.enabled = false
        otel.logs.enabled = false
        otel.traces.exporter = .none
        otel.traces.sampler = .alwaysOn
        // Room for every span of a row: with OTel's default queue (2048 spans, drained every
        // 5 s) spans past the queue are dropped, which costs less than keeping them.
        otel.traces.batchSpanProcessor.scheduleDelay = .milliseconds(100)
        otel.traces.batchSpanProcessor.maxQueueSize = 1 << 16
        otel.traces.batchSpanProcessor.maxExportBatchSize = 4096
        let tracing = try OTel.makeTracingBackend(configuration: otel)
        let tracer: (any Tracer)? = tracing.factory
        let exporting = Task { try await tracing.service.run() }
        defer { exporting.cancel() }
        #else
        // A sanitizer build has no swift-otel (Package.swift): no traced row.
        let tracer: (any Tracer)? = nil
        #endif

        let (clients, small) = (self.clients, self.small)
        let call: @Sendable (GRPCClient<PooledTransport>) async throws -> Void = { client in
            try await clients.unary(client, small, options: options)
        }
        for level in [1, 16] {
            let plain1 = try await self.measure("(a) pool stub, defaults", "32 B plain", concurrency: level) {
                try await clients.poolStub(small, settings: .defaults)
            }
            let metrics = try await self.measure("(a) pool stub, defaults", "32 B metrics", concurrency: level) {
                try await call(observed)
            }
            // The tracer is bound per call (`withTracer`): bootstrapping it would trace every
            // later row of the run.
            var traced: Measure.Row?
            if let tracer {
                traced = try await self.measure("(a) pool stub, defaults", "32 B m+traces", concurrency: level) {
                    try await withTracer(tracer) { try await call(observed) }
                }
            }
            let plain2 = try await self.measure("(a) pool stub, defaults", "32 B plain", concurrency: level) {
                try await clients.poolStub(small, settings: .defaults)
            }
            let plain = (plain1.cpuPerCall + plain2.cpuPerCall) / 2
            self.ratios["metrics_vs_plain_cpu_c\(level)"] = metrics.cpuPerCall / plain
            if let traced { self.ratios["metrics_traces_vs_plain_cpu_c\(level)"] = traced.cpuPerCall / plain }
        }
    }
}
