import Foundation
import GRPCCore
import GRPCPoolCoreBridge
import Testing

@testable import GRPCPool

@Suite("ServiceConfig validation")
struct ServiceConfigValidationTests {
    typealias Config = PoolManager.ServiceConfig

    @Test("The seed's defaults")
    func defaults() throws {
        let config = Config(host: "localhost", port: 50051)
        #expect(config.poolSize == 3)
        #expect(config.maxRetries == 3)
        #expect(config.retryDelay == .seconds(1))
        #expect(config.timeout == .seconds(30))
        #expect(config.keepaliveTime == .seconds(10))
        #expect(config.keepaliveTimeout == .seconds(5))
        #expect(config.maxConnectionIdle == .seconds(300))
        #expect(config.enableRetries)
        #expect(config.compression)
        #expect(config.compressionThreshold == 2048)
        #expect(config.connectionWaitTimeout == .seconds(30))
        #expect(config.drainTimeout == .seconds(30))
        #expect(config.defaultCallTimeout == nil)
        #expect(config.healthCheck.interval == .seconds(30))
        #expect(config.balancing == .roundRobin)
        #expect(config.whenNoneHealthy == .waitUntilDeadline)
        #expect(config.transportSecurity == .plaintext)
        try config.validate()
    }

    static let invalid: [(String, @Sendable (inout Config) -> Void, String, String)] = [
        ("empty host", { $0.endpoints = [.init(host: "", port: 1)] }, "host", "\"\""),
        ("blank host", { $0.endpoints = [.init(host: "  ", port: 1)] }, "host", "\"  \""),
        ("host with a slash", { $0.endpoints = [.init(host: "a/b", port: 1)] }, "host", "\"a/b\""),
        ("port 0", { $0.endpoints = [.init(host: "h", port: 0)] }, "port", "0"),
        ("port 65536", { $0.endpoints = [.init(host: "h", port: 65536)] }, "port", "65536"),
        ("negative port", { $0.endpoints = [.init(host: "h", port: -1)] }, "port", "-1"),
        (
            "second endpoint", { $0.endpoints = [.init(host: "h", port: 1), .init(host: "h", port: 0)] },
            "endpoints[1].port", "0"
        ),
        ("no endpoints", { $0.endpoints = [] }, "endpoints", "[]"),
        ("empty target", { $0.endpoints = [.init(target: " ")] }, "target", "\" \""),
        ("dns target without a host", { $0.endpoints = [.init(target: "dns:///:443")] }, "target", "\"dns:///:443\""),
        ("dns target port 0", { $0.endpoints = [.init(target: "dns:///svc:0")] }, "target", "\"dns:///svc:0\""),
        ("etcd target without a cluster", { $0.endpoints = [.init(target: "etcd:///svc")] }, "discovery.etcd", "nil"),
        ("etcd target without a prefix", { $0.endpoints = [.init(target: "etcd:///")] }, "target", "\"etcd:///\""),
        (
            "etcd user without password",
            {
                $0.endpoints = [.init(target: "etcd:///svc")]
                $0.discovery.etcd = .init(endpoints: [.init(host: "127.0.0.1", port: 2379)], username: "u")
            },
            "discovery.etcd.password", "nil"
        ),
        (
            "etcd without members",
            {
                $0.endpoints = [.init(target: "etcd:///svc")]
                $0.discovery.etcd = .init(endpoints: [])
            },
            "discovery.etcd.endpoints", "[]"
        ),
        (
            "dns+srv target with a port", { $0.endpoints = [.init(target: "dns+srv:///_a._tcp.svc:80")] }, "target",
            "\"dns+srv:///_a._tcp.svc:80\""
        ),
        (
            "dns server not ip:port", { $0.endpoints = [.init(target: "dns://1.2.3.4:x/svc:1")] }, "target",
            "\"dns://1.2.3.4:x/svc:1\""
        ),
        ("dns authority unterminated", { $0.endpoints = [.init(target: "dns://svc:1")] }, "target", "\"dns://svc:1\""),
        (
            "zero resolutionInterval", { $0.discovery.resolutionInterval = .zero }, "discovery.resolutionInterval",
            "\(Duration.zero)"
        ),
        (
            "zero minResolutionInterval", { $0.discovery.minResolutionInterval = .zero },
            "discovery.minResolutionInterval", "\(Duration.zero)"
        ),
        (
            "minResolutionInterval above the interval",
            {
                $0.discovery.resolutionInterval = .seconds(2)
                $0.discovery.minResolutionInterval = .seconds(3)
            }, "discovery.minResolutionInterval", "\(Duration.seconds(3))"
        ),
        (
            "zero resolutionTimeout", { $0.discovery.resolutionTimeout = .zero }, "discovery.resolutionTimeout",
            "\(Duration.zero)"
        ),
        ("empty clientID", { $0.discovery.clientID = "" }, "discovery.clientID", "\"\""),
        (
            "zero connectionWaitTimeout", { $0.connectionWaitTimeout = .zero }, "connectionWaitTimeout",
            "\(Duration.zero)"
        ),
        ("negative drainTimeout", { $0.drainTimeout = .seconds(-1) }, "drainTimeout", "\(Duration.seconds(-1))"),
        ("zero defaultCallTimeout", { $0.defaultCallTimeout = .zero }, "defaultCallTimeout", "\(Duration.zero)"),
        ("negative compressionThreshold", { $0.compressionThreshold = -1 }, "compressionThreshold", "-1"),
        ("poolSize 0", { $0.poolSize = 0 }, "poolSize", "0"),
        ("poolSize absurd", { $0.poolSize = 100_000 }, "poolSize", "100000"),
        ("negative maxRetries", { $0.maxRetries = -1 }, "maxRetries", "-1"),
        ("zero streamCapacity", { $0.streamCapacity = 0 }, "streamCapacity", "0"),
        ("no stream beside the pool's own", { $0.streamCapacity = 1 }, "streamCapacity", "1"),
        ("negative maxQueuedCalls", { $0.maxQueuedCalls = -1 }, "maxQueuedCalls", "-1"),
        ("maxConnections below poolSize", { $0.maxConnections = 2 }, "maxConnections", "2"),
        (
            "scaling interval 0",
            {
                $0.maxConnections = 8
                $0.scaling.interval = .zero
            }, "scaling.interval", "\(Duration.zero)"
        ),
        ("zero maxConnectionAge", { $0.maxConnectionAge = .zero }, "maxConnectionAge", "\(Duration.zero)"),
        (
            "outlier streak 0", { $0.outlierDetection?.consecutiveFailures = 0 },
            "outlierDetection.consecutiveFailures", "0"
        ),
        (
            "outlier time 0", { $0.outlierDetection?.ejectionTime = .zero }, "outlierDetection.ejectionTime",
            "\(Duration.zero)"
        ),
        ("outlier share 0", { $0.outlierDetection?.maxEjectedShare = 0 }, "outlierDetection.maxEjectedShare", "0.0"),
        ("zero retryDelay", { $0.retryDelay = .zero }, "retryDelay", "\(Duration.zero)"),
        ("negative retryDelay", { $0.retryDelay = .seconds(-1) }, "retryDelay", "\(Duration.seconds(-1))"),
        (
            "maxRetryDelay below retryDelay", { $0.maxRetryDelay = .milliseconds(10) }, "maxRetryDelay",
            "\(Duration.milliseconds(10))"
        ),
        ("zero timeout", { $0.timeout = .zero }, "timeout", "\(Duration.zero)"),
        ("zero keepaliveTime", { $0.keepaliveTime = .zero }, "keepaliveTime", "\(Duration.zero)"),
        (
            "negative keepaliveTimeout", { $0.keepaliveTimeout = .seconds(-5) }, "keepaliveTimeout",
            "\(Duration.seconds(-5))"
        ),
        (
            "maxConnectionIdle under 1 s", { $0.maxConnectionIdle = .milliseconds(10) }, "maxConnectionIdle",
            "\(Duration.milliseconds(10))"
        ),
        ("zero health-check interval", { $0.healthCheck.interval = .zero }, "healthCheck.interval", "\(Duration.zero)"),
        ("zero health-check timeout", { $0.healthCheck.timeout = .zero }, "healthCheck.timeout", "\(Duration.zero)"),
        ("retry attempts 1", { $0.retryPolicy.maxAttempts = 1 }, "retryPolicy.maxAttempts", "1"),
        ("retry attempts 9", { $0.retryPolicy.maxAttempts = 9 }, "retryPolicy.maxAttempts", "9"),
        (
            "retry backoff zero", { $0.retryPolicy.initialBackoff = .zero }, "retryPolicy.initialBackoff",
            "\(Duration.zero)"
        ),
        ("retry multiplier", { $0.retryPolicy.backoffMultiplier = -2 }, "retryPolicy.backoffMultiplier", "-2.0"),
        ("retry codes empty", { $0.retryPolicy.retryableStatusCodes = [] }, "retryPolicy.retryableStatusCodes", "[]"),
        (
            "retry code unknown", { $0.retryPolicy.retryableStatusCodes = ["BROKEN"] },
            "retryPolicy.retryableStatusCodes", "\"BROKEN\""
        ),
        ("max send size", { $0.maxSendMessageSize = 0 }, "maxSendMessageSize", "0"),
        ("max receive size", { $0.maxReceiveMessageSize = -1 }, "maxReceiveMessageSize", "-1"),
        ("user agent", { $0.userAgent = "a\nb" }, "userAgent", "\"a\nb\""),
        (
            "unreadable CA file",
            { $0.transportSecurity = .tls(.init(trustRoots: .file(path: "/nonexistent/ca.pem"))) },
            "transportSecurity.trustRoots", "\"/nonexistent/ca.pem\""
        ),
        (
            "CA not PEM", { $0.transportSecurity = .tls(.init(trustRoots: .pem("hello"))) },
            "transportSecurity.trustRoots", "\"hello…\""
        ),
        (
            "key without chain",
            {
                $0.transportSecurity = .tls(.init(privateKey: .pem("-----BEGIN PRIVATE KEY-----\n")))
            }, "transportSecurity.certificateChain", "nil"
        ),
    ]

    @Test("Every invalid field throws a ConfigurationError naming the field and value", arguments: invalid.indices)
    func invalidField(index: Int) {
        let (name, mutate, field, value) = Self.invalid[index]
        var config = Config(host: "localhost", port: 50051)
        mutate(&config)
        let error = #expect(throws: ConfigurationError.self, "\(name)") { try config.validate() }
        #expect(error?.field == field, "\(name)")
        #expect(error?.value == value, "\(name)")
        #expect(error.map { "\($0)" }?.contains(field) == true)
    }

    @Test("PoolManager prefixes the field with the service id and rejects empty configurations")
    func managerErrors() {
        let error = #expect(throws: ConfigurationError.self) {
            try PoolManager(services: ["stt": .init(host: "localhost", port: 0)])
        }
        #expect(error?.field == "stt.port")
        #expect(error?.value == "0")
        #expect(throws: ConfigurationError.self) { try PoolManager(services: [:]) }
        #expect(throws: ConfigurationError.self) { try PoolManager(services: ["": .init(host: "h", port: 1)]) }
    }

    @Test("A readable PEM file is accepted")
    func readablePEM() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("grpcpool-ca-\(UUID()).pem").path
        try "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".write(
            toFile: path,
            atomically: true,
            encoding: .utf8
        )
        defer { try? FileManager.default.removeItem(atPath: path) }
        var config = Config(host: "localhost", port: 443)
        config.transportSecurity = .tls(.init(trustRoots: .file(path: path)))
        try config.validate()
    }

    @Test("Every kind of method is retried by the pool itself: no execution policy for GRPCCore, no core retries")
    func retriesByKind() throws {
        let config = Config(host: "localhost", port: 443)
        let configs = TransportMethodConfigs(config)
        let bidi = MethodDescriptor(fullyQualifiedService: "a.B", method: "C", type: .bidirectionalStreaming)
        let unary = MethodDescriptor(fullyQualifiedService: "a.B", method: "C", type: .unary)
        let untyped = MethodDescriptor(fullyQualifiedService: "a.B", method: "C")
        for method in [bidi, unary, untyped] {
            #expect(configs.config(for: method).executionPolicy == nil)
            #expect(configs.config(for: method).maxResponseMessageBytes == 4 << 20)
        }
        #expect(config.channelOptions().enableRetries == false)
    }
}

@Suite("Backoff and latency histogram")
struct BackoffTests {
    @Test("Delays double from retryDelay, cap at maxRetryDelay, and stay at the cap after maxRetries")
    func curve() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1), fastAttempts: 3)
        #expect(backoff.baseDelay(attempt: 1) == .milliseconds(100))
        #expect(backoff.baseDelay(attempt: 2) == .milliseconds(200))
        #expect(backoff.baseDelay(attempt: 3) == .milliseconds(400))
        #expect(backoff.baseDelay(attempt: 4) == .seconds(1))
        #expect(backoff.baseDelay(attempt: 1000) == .seconds(1))
        let long = Backoff(initial: .seconds(1), maximum: .seconds(30), fastAttempts: 100)
        #expect(long.baseDelay(attempt: 90) == .seconds(30), "no overflow")
    }

    @Test("Jitter stays within ±20 %")
    func jitter() {
        let backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(1), fastAttempts: 3)
        for attempt in 1...5 {
            let base = backoff.baseDelay(attempt: attempt)
            for _ in 0..<100 {
                let delay = backoff.delay(attempt: attempt)
                #expect(delay >= base * 0.8 && delay <= base * 1.2)
            }
        }
    }

    @Test("Percentiles are within one bucket (about 6 %) of the true value")
    func percentiles() {
        var histogram = LatencyHistogram()
        for micros in 1...10_000 { histogram.record(.microseconds(micros)) }
        let p50 = histogram.percentile(0.5).microseconds
        let p99 = histogram.percentile(0.99).microseconds
        #expect(abs(p50 - 5_000) <= 5_000 / 16 + 1, "p50 \(p50)")
        #expect(abs(p99 - 9_900) <= 9_900 / 16 + 1, "p99 \(p99)")
        #expect(histogram.count == 10_000)
        #expect(histogram.mean == .microseconds(5_000) + .nanoseconds(500))
        var merged = LatencyHistogram()
        merged.merge(histogram)
        merged.merge(histogram)
        #expect(merged.count == 20_000)
        #expect(merged.percentile(0.5) == histogram.percentile(0.5))
        #expect(LatencyHistogram().percentile(0.99) == .zero)
    }
}
