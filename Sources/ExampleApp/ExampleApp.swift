import ArgumentParser
import DemoServices
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCPool
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import SwiftProtobuf
import Tracing
import UnixSignals

#if GRPC_POOL_OTEL
import OTel
#endif

/// An application that uses the pool, the Swift server way: a Hummingbird HTTP app and the `PoolManager` run
/// side by side in one `ServiceGroup`; SIGTERM or SIGINT drains both.
///
/// - `GET /health`: per service and connection, as JSON (503 when a service has no healthy
///   connection)
/// - `GET /metrics`: Prometheus text format (the pool's swift-metrics series)
/// - `POST /stt/transcribe` (body: audio bytes), `GET /nlp/analyze?text=…`,
///   `GET /summary?text=…&sentences=N`: one call each through the pool
///
/// With no `--stt/--nlp/--summary` targets it starts the three demo services itself.
///
/// With `--otlp-endpoint`, swift-otel is the tracer: each HTTP request is a server span
/// (Hummingbird's `TracingMiddleware`), each attempt of the gRPC call it makes through the pool a
/// client span under it, and an embedded demo service's handling a server span under that (the
/// `traceparent` the pool sends); spans go to the endpoint over OTLP/gRPC.
@main
struct ExampleApp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "example-app",
        abstract: "A Hummingbird app that calls gRPC services through GRPCPool."
    )

    @Option(help: "HTTP port (0 picks a free one; the chosen port is printed).")
    var port: Int = 8080

    @Option(help: "stt service HOST:PORT (default: an embedded demo server).")
    var stt: String?

    @Option(help: "nlp service HOST:PORT (default: an embedded demo server).")
    var nlp: String?

    @Option(help: "summary service HOST:PORT (default: an embedded demo server).")
    var summary: String?

    @Option(help: "Export traces over OTLP/gRPC to this endpoint (http://HOST:PORT); no tracing without it.")
    var otlpEndpoint: String?

    @Option(
        help: "Serve gRPC's channelz service (grpc.channelz.v1) on this port (0 picks one; printed); none without it."
    )
    var channelzPort: Int?

    func run() async throws {
        var logger = Logger(label: "example-app")
        logger.logLevel = .info

        // Traces: swift-otel bootstrapped as the process's tracer, exporting over OTLP/gRPC.
        var background: [any Service] = []
        var tracer: (any Tracer)?
        if let otlpEndpoint {
            #if GRPC_POOL_OTEL
            var otel = OTel.Configuration.default
            otel.serviceName = "example-app"
            otel.metrics.enabled = false
            otel.logs.enabled = false
            otel.traces.exporter = .otlp
            otel.traces.otlpExporter.protocol = .grpc
            otel.traces.otlpExporter.endpoint = otlpEndpoint
            let tracing = try OTel.makeTracingBackend(configuration: otel)
            InstrumentationSystem.bootstrap(tracing.factory)
            background.append(tracing.service)
            tracer = tracing.factory
            #else
            // A sanitizer build (`make tsan`, `make asan`) has no swift-otel (Package.swift).
            throw ValidationError("--otlp-endpoint \(otlpEndpoint): this build has no OTLP exporter (no swift-otel)")
            #endif
        }

        // The services: given, or embedded demo servers.
        var embedded: [DemoServer] = []
        func endpoint(_ given: String?) async throws -> PoolManager.Endpoint {
            if let given {
                guard let endpoint = PoolManager.Endpoint(parsing: given) else {
                    throw ValidationError("'\(given)' is not HOST:PORT")
                }
                return endpoint
            }
            let server = DemoServer(tracer: tracer)
            try await server.start()
            embedded.append(server)
            return .init(host: "127.0.0.1", port: server.port)
        }
        let services: [ServiceID: PoolManager.ServiceConfig] = [
            "stt": .init(endpoints: [try await endpoint(self.stt)], poolSize: 3),
            "nlp": .init(endpoints: [try await endpoint(self.nlp)], poolSize: 2),
            "summary": .init(endpoints: [try await endpoint(self.summary)], poolSize: 2),
        ]

        // Metrics: a Prometheus registry behind swift-metrics.
        // gRPC's standard metrics under OpenTelemetry's Prometheus names, with A66's buckets.
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.nameAndLabelSanitizer = GRPCMetricNames.prometheus
        for name in GRPCMetricNames.latencyHistograms {
            factory.durationHistogramBuckets[name] = GRPCMetricNames.latencyBuckets.map {
                .nanoseconds(Int64(($0 * 1e9).rounded()))
            }
        }
        for name in GRPCMetricNames.sizeHistograms { factory.valueHistogramBuckets[name] = GRPCMetricNames.sizeBuckets }
        var poolLogger = Logger(label: "grpc.pool")
        poolLogger.logLevel = .info
        let manager = try PoolManager(services: services, logger: poolLogger, metricsFactory: factory)

        // gRPC's channelz service, on a grpc-swift-2 server of the app's own.
        var servers: [any Service] = []
        if let channelzPort {
            let server = GRPCServer(
                transport: HTTP2ServerTransport.Posix(
                    address: .ipv4(host: "127.0.0.1", port: channelzPort),
                    transportSecurity: .plaintext
                ),
                services: [ChannelzService()]
            )
            servers.append(GRPCServerService(server: server))
            Task {
                if let address = try? await server.listeningAddress?.ipv4 {
                    FileHandle.standardOutput.write(Data("channelz on 127.0.0.1:\(address.port)\n".utf8))
                }
            }
        }

        let router = Router()
        if tracer != nil { router.add(middleware: TracingMiddleware()) }
        Routes.add(to: router, manager: manager, registry: registry)
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: self.port), serverName: "example-app"),
            onServerRunning: { channel in
                let line = "listening on http://127.0.0.1:\(channel.localAddress?.port ?? 0)\n"
                FileHandle.standardOutput.write(Data(line.utf8))
            },
            logger: logger
        )

        let group = ServiceGroup(
            configuration: .init(
                // Shut down in reverse order: the tracer's exporter after the app and the pool,
                // so that it exports their last spans.
                services: background + [manager, app] + servers,
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
        for server in embedded { await server.stop() }
        FileHandle.standardOutput.write(Data("shut down cleanly\n".utf8))
    }
}

enum Routes {
    static func add(to router: Router<BasicRequestContext>, manager: PoolManager, registry: PrometheusCollectorRegistry)
    {
        router.get("/health") { _, _ -> Response in
            let health = await manager.healthCheck()
            let metrics = manager.metrics()
            var body: [String: Any] = [:]
            for (id, pool) in metrics {
                body[id.rawValue] =
                    [
                        "healthy": health[id] ?? false,
                        "healthy_connections": pool.healthyConnections,
                        "pool_size": pool.poolSize,
                        "connections": pool.connections.map {
                            [
                                "index": $0.index, "endpoint": $0.endpoint, "state": "\($0.state)",
                                "healthy": $0.isHealthy,
                            ] as [String: Any]
                        },
                    ] as [String: Any]
            }
            let status: HTTPResponse.Status = health.values.allSatisfy { $0 } ? .ok : .serviceUnavailable
            return try json(body, status: status)
        }

        // The pool's connections joined with their channels' channelz data.
        router.get("/debug/channelz") { _, _ -> Response in
            let services = await manager.channelz().map { ($0.key.rawValue, $0.value.map(\.jsonObject)) }
            return try json(["services": Dictionary(uniqueKeysWithValues: services)])
        }

        router.get("/metrics") { _, _ -> Response in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4"],
                body: .init(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer()))
            )
        }

        router.post("/stt/transcribe") { request, context -> Response in
            let audio = try await request.body.collect(upTo: 1 << 20)
            let reply = try await manager.withConnection(to: "stt") { connection in
                try await STT.Client(wrapping: connection.client).transcribe(
                    .with { $0.audio = Data(audio.readableBytesView) }
                )
            }
            return try json(["text": reply.text, "confidence": Double(reply.confidence)])
        }

        router.get("/nlp/analyze") { request, _ -> Response in
            let text = request.uri.queryParameters.get("text") ?? ""
            let reply = try await NLP.Client(wrapping: manager.client(for: "nlp")).analyze(.with { $0.text = text })
            return try json(["tokens": reply.tokens, "sentiment": Double(reply.sentiment)])
        }

        router.get("/summary") { request, _ -> Response in
            let text = request.uri.queryParameters.get("text") ?? ""
            let sentences = request.uri.queryParameters.get("sentences").flatMap { Int32($0) } ?? 1
            let reply = try await Summary.Client(wrapping: manager.client(for: "summary")).summarize(
                .with {
                    $0.text = text
                    $0.maxSentences = sentences
                }
            )
            return try json(["summary": reply.summary])
        }
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(
            status: status,
            headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data))
        )
    }
}

/// A grpc-swift-2 server as a swift-service-lifecycle service: served until the group shuts
/// down, then drained.
struct GRPCServerService<Transport: ServerTransport>: Service {
    let server: GRPCServer<Transport>

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.server.serve()
        } onGracefulShutdown: {
            self.server.beginGracefulShutdown()
        }
    }
}
