extension PoolManager {
    /// How one service is reached and pooled: the seed's `ServiceConfig`, with the same fields and
    /// defaults, plus endpoints, TLS, health checking and balancing.
    ///
    /// ```swift
    /// var stt = PoolManager.ServiceConfig(host: "localhost", port: 50051)
    /// stt.poolSize = 3
    /// stt.timeout = .seconds(30)
    /// ```
    ///
    /// Values are checked when a ``PoolManager`` is created: a bad one throws
    /// ``ConfigurationError`` naming the field and the value.
    public struct ServiceConfig: Sendable, Hashable {
        /// Where the service runs. Connections are spread over the endpoints in turn (connection
        /// `i` goes to `endpoints[i % endpoints.count]`). Default: the one given to `init`.
        public var endpoints: [Endpoint]
        /// Connections in the pool. Default `3` (2–5 is typical); at most 1024. With
        /// ``maxConnections`` set, the fewest the pool keeps.
        public var poolSize: Int
        /// Dynamic sizing: the most connections the pool grows to under load, from `poolSize`.
        /// Default `nil`: the pool keeps `poolSize` connections.
        public var maxConnections: Int?
        /// How the pool grows and shrinks between `poolSize` and ``maxConnections``.
        public var scaling: Scaling
        /// Reconnection attempts per episode at growing delays before the pool settles on trying
        /// every ``maxRetryDelay``. Default `3`.
        public var maxRetries: Int
        /// The first delay between reconnection attempts; it doubles per attempt (±20 % jitter).
        /// Also the core's own initial reconnect backoff. Default 1 s.
        public var retryDelay: Duration
        /// The cap on the reconnection delay. Default 30 s.
        public var maxRetryDelay: Duration
        /// How long a connection attempt may take, and the deadline of calls that set none.
        /// Default 30 s.
        public var timeout: Duration
        /// Interval of HTTP/2 keepalive pings (`grpc.keepalive_time_ms`). Default 10 s.
        public var keepaliveTime: Duration
        /// How long to wait for a ping's answer before the connection is considered dead
        /// (`grpc.keepalive_timeout_ms`). Default 5 s.
        public var keepaliveTimeout: Duration
        /// Close a connection after this long without calls (`grpc.client_idle_timeout_ms`); the
        /// next call reconnects it. Default 5 minutes.
        public var maxConnectionIdle: Duration
        /// Retry calls that fail with a retryable code (``retryPolicy``; UNAVAILABLE by default).
        /// grpc-swift's client retries them on the clients this pool hands out, each attempt
        /// picking a connection again; the core's own retries stay off (they would stay on the
        /// failing connection). Default `true`.
        public var enableRetries: Bool
        /// The retry policy applied to every method when ``enableRetries`` is on.
        public var retryPolicy: CallRetryPolicy
        /// Compress requests with gzip (`grpc.default_compression_algorithm`). Default `true`.
        public var compression: Bool
        /// Plaintext or TLS. Default ``TransportSecurity/plaintext``: plaintext happens only when
        /// the configuration says so, and this default says so.
        public var transportSecurity: TransportSecurity
        /// Background health checking. Default: every 30 s, connectivity only.
        public var healthCheck: HealthCheck
        /// How a call picks its connection. Default ``BalancingPolicy/roundRobin`` ;
        /// ``BalancingPolicy/leastBusy`` routes around slow and failing connections.
        public var balancing: BalancingPolicy
        /// Calls (and `withConnection` leases) one connection carries at most; a connection at
        /// capacity is not picked. Default `100`, the common server limit on concurrent streams
        /// per HTTP/2 connection. Keep it at or below the server's limit: past it, calls queue
        /// inside the core rather than in the pool, and a grpc-swift (NIO) server resets the
        /// connection outright when one channel opens far more streams than it allows (measured:
        /// 256 calls at once on one channel to a 100-stream server all fail UNAVAILABLE,
        /// "Connection reset by peer", again after every reconnection).
        public var streamCapacity: Int
        /// Calls that may wait for a connection with room when every healthy connection is at
        /// ``streamCapacity``. They wait up to their deadline; past this bound a call fails at
        /// once with RESOURCE_EXHAUSTED. Default `1000`; `0` sheds at once.
        public var maxQueuedCalls: Int
        /// Replace each connection after this long (±10 % jitter, so that a pool's connections do
        /// not all move at once): a new channel is connected and checked, then swapped in before
        /// the old one stops taking calls; the old one finishes its calls. Behind an L4 load
        /// balancer, this is what spreads a pool over backends added later. Default `nil` (never).
        public var maxConnectionAge: Duration?
        /// Passive outlier ejection: a connection whose calls keep failing while the others'
        /// succeed is taken out of rotation and its channel replaced. Default on
        /// (``OutlierDetection/defaults``); `nil` turns it off.
        public var outlierDetection: OutlierDetection?
        /// What a call does when no connection is healthy. Default
        /// ``NoHealthyConnectionPolicy/waitUntilDeadline``.
        public var whenNoneHealthy: NoHealthyConnectionPolicy
        /// Largest message the client sends; `nil` leaves it unlimited. Default `nil`.
        public var maxSendMessageSize: Int?
        /// Largest message the client accepts. Default 4 MiB (the core's default).
        public var maxReceiveMessageSize: Int
        /// Prepended to the core's user agent. Default `"grpc-pool-swift"`.
        public var userAgent: String

        /// A service at `host:port` with the default settings.
        public init(
            host: String,
            port: Int,
            poolSize: Int = 3,
            maxRetries: Int = 3,
            retryDelay: Duration = .seconds(1),
            timeout: Duration = .seconds(30),
            keepaliveTime: Duration = .seconds(10),
            keepaliveTimeout: Duration = .seconds(5),
            maxConnectionIdle: Duration = .seconds(300),
            enableRetries: Bool = true,
            compression: Bool = true
        ) {
            self.init(
                endpoints: [Endpoint(host: host, port: port)],
                poolSize: poolSize,
                maxRetries: maxRetries,
                retryDelay: retryDelay,
                timeout: timeout,
                keepaliveTime: keepaliveTime,
                keepaliveTimeout: keepaliveTimeout,
                maxConnectionIdle: maxConnectionIdle,
                enableRetries: enableRetries,
                compression: compression
            )
        }

        /// A service with several endpoints (or `dns:///` targets) and the default settings.
        public init(
            endpoints: [Endpoint],
            poolSize: Int = 3,
            maxRetries: Int = 3,
            retryDelay: Duration = .seconds(1),
            timeout: Duration = .seconds(30),
            keepaliveTime: Duration = .seconds(10),
            keepaliveTimeout: Duration = .seconds(5),
            maxConnectionIdle: Duration = .seconds(300),
            enableRetries: Bool = true,
            compression: Bool = true
        ) {
            self.endpoints = endpoints
            self.poolSize = poolSize
            self.maxRetries = maxRetries
            self.retryDelay = retryDelay
            self.maxRetryDelay = .seconds(30)
            self.timeout = timeout
            self.keepaliveTime = keepaliveTime
            self.keepaliveTimeout = keepaliveTimeout
            self.maxConnectionIdle = maxConnectionIdle
            self.enableRetries = enableRetries
            self.retryPolicy = .defaults
            self.compression = compression
            self.transportSecurity = .plaintext
            self.healthCheck = .defaults
            self.balancing = .roundRobin
            self.streamCapacity = 100
            self.maxQueuedCalls = 1000
            self.outlierDetection = .defaults
            self.maxConnectionAge = nil
            self.maxConnections = nil
            self.scaling = .defaults
            self.whenNoneHealthy = .waitUntilDeadline
            self.maxSendMessageSize = nil
            self.maxReceiveMessageSize = 4 << 20
            self.userAgent = "grpc-pool-swift"
        }

        /// Where connection `index` connects: the endpoints in turn.
        func endpoint(forConnection index: Int) -> Endpoint {
            self.endpoints[index % self.endpoints.count]
        }

        /// The first endpoint's host.
        public var host: String { self.endpoints.first?.host ?? "" }
        /// The first endpoint's port.
        public var port: Int { self.endpoints.first?.port ?? 0 }
    }

    /// One address of a service.
    public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// The host name or IP address (empty for a raw target).
        public var host: String
        /// The port (0 for a raw target).
        public var port: Int
        /// A core target string used as is (`dns:///svc:443`, `ipv4:10.0.0.1:50051,10.0.0.2:50051`,
        /// `unix:/run/svc.sock`), or `nil` to use `host:port`.
        public var target: String?

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
            self.target = nil
        }

        /// A raw core target; the core's resolvers spread the connection over what it names.
        public init(target: String) {
            self.host = ""
            self.port = 0
            self.target = target
        }

        /// Parses `host:port`, `[v6]:port`, or a core target with a scheme (`dns:///…`, `ipv4:…`,
        /// `ipv6:…`, `unix:…`, used as is); `nil` when the text is none of these.
        public init?(parsing text: String) {
            if text.contains("://") || text.hasPrefix("ipv4:") || text.hasPrefix("ipv6:") || text.hasPrefix("unix:") {
                self.init(target: text)
                return
            }
            guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
                return nil
            }
            var host = String(text[..<colon])
            if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
            self.init(host: host, port: port)
        }

        /// The string handed to `grpc_channel_create`.
        public var description: String {
            if let target { return target }
            return self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
        }
    }

    /// Plaintext or TLS.
    public struct TransportSecurity: Sendable, Hashable {
        enum Mode: Sendable, Hashable {
            case plaintext
            case tls(TLS)
        }

        let mode: Mode

        /// Plaintext HTTP/2: only for trusted networks and tests.
        public static let plaintext = TransportSecurity(mode: .plaintext)

        /// TLS, optionally mutual.
        public static func tls(_ tls: TLS = TLS()) -> TransportSecurity {
            TransportSecurity(mode: .tls(tls))
        }
    }

    /// TLS settings.
    public struct TLS: Sendable, Hashable {
        /// Certificates to trust; `nil` uses the core's default roots.
        public var trustRoots: CertificateSource?
        /// The client certificate chain, for mutual TLS.
        public var certificateChain: CertificateSource?
        /// The client private key, for mutual TLS.
        public var privateKey: CertificateSource?
        /// The name to check the server's certificate against instead of the host.
        public var serverHostnameOverride: String?

        public init(
            trustRoots: CertificateSource? = nil,
            certificateChain: CertificateSource? = nil,
            privateKey: CertificateSource? = nil,
            serverHostnameOverride: String? = nil
        ) {
            self.trustRoots = trustRoots
            self.certificateChain = certificateChain
            self.privateKey = privateKey
            self.serverHostnameOverride = serverHostnameOverride
        }
    }

    /// PEM text, inline or in a file.
    public enum CertificateSource: Sendable, Hashable {
        case pem(String)
        case file(path: String)
    }

    /// How a pool with ``ServiceConfig/maxConnections`` sizes itself.
    ///
    /// Every ``interval``, the pool compares its demand (calls in flight and waiting) per active
    /// connection with ``targetInFlight``. Above the band, it adds at once the connections that
    /// would bring it back into the band (up to `maxConnections`), then waits ``scaleUpCooldown``
    /// before adding more. Below the band for ``scaleDownReadings`` readings in a row, it removes
    /// one connection (down to `poolSize`), which drains: it takes no new calls, and closes once
    /// the calls on it have finished.
    public struct Scaling: Sendable, Hashable {
        /// The band of calls per connection the pool aims for. Default 10…50.
        public var targetInFlight: ClosedRange<Int>
        /// How often demand is read. Default 1 s.
        public var interval: Duration
        /// The least time between two growths. Default 5 s.
        public var scaleUpCooldown: Duration
        /// Readings below the band in a row before one connection is removed. Default 5.
        public var scaleDownReadings: Int

        public init(
            targetInFlight: ClosedRange<Int> = 10...50,
            interval: Duration = .seconds(1),
            scaleUpCooldown: Duration = .seconds(5),
            scaleDownReadings: Int = 5
        ) {
            self.targetInFlight = targetInFlight
            self.interval = interval
            self.scaleUpCooldown = scaleUpCooldown
            self.scaleDownReadings = scaleDownReadings
        }

        public static var defaults: Scaling { Scaling() }
    }

    /// When a connection counts as an outlier, and what happens to it.
    ///
    /// A connection whose last ``consecutiveFailures`` calls failed with UNAVAILABLE or
    /// DEADLINE_EXCEEDED, while another connection of the pool succeeds, is ejected: out of
    /// rotation for ``ejectionTime``, during which its channel is replaced by a new one (the old
    /// one's calls run to their end). Then it is checked and, if healthy, restored. Ejection never
    /// takes out more than ``maxEjectedShare`` of the pool (at least one connection, never the
    /// last one in rotation).
    public struct OutlierDetection: Sendable, Hashable {
        /// Failed calls in a row that eject a connection. Default 5.
        public var consecutiveFailures: Int
        /// How long an ejected connection stays out of rotation. Default 10 s.
        public var ejectionTime: Duration
        /// The largest share of the pool ejected at once, in (0, 1]. Default 0.5.
        public var maxEjectedShare: Double

        public init(consecutiveFailures: Int = 5, ejectionTime: Duration = .seconds(10), maxEjectedShare: Double = 0.5)
        {
            self.consecutiveFailures = consecutiveFailures
            self.ejectionTime = ejectionTime
            self.maxEjectedShare = maxEjectedShare
        }

        public static var defaults: OutlierDetection { OutlierDetection() }
    }

    /// Background health checking of each connection.
    public struct HealthCheck: Sendable, Hashable {
        /// The name to ask `grpc.health.v1.Health/Check` about (`""` is the whole server);
        /// `nil` checks connectivity only. Default `nil`.
        public var serviceName: String?
        /// How often each connection is checked. Default 30 s.
        public var interval: Duration
        /// How long one check may take before the connection counts as unresponsive. Default 5 s.
        public var timeout: Duration

        public init(serviceName: String? = nil, interval: Duration = .seconds(30), timeout: Duration = .seconds(5)) {
            self.serviceName = serviceName
            self.interval = interval
            self.timeout = timeout
        }

        public static var defaults: HealthCheck { HealthCheck() }
    }

    /// The retry policy for calls (the service config's `retryPolicy` fields), applied to every
    /// method of the service by the clients the pool hands out.
    public struct CallRetryPolicy: Sendable, Hashable {
        /// Attempts including the first; 2–5. Default 3.
        public var maxAttempts: Int
        /// Default 100 ms.
        public var initialBackoff: Duration
        /// Default 1 s.
        public var maxBackoff: Duration
        /// Default 2.
        public var backoffMultiplier: Double
        /// Status codes that are retried. Default UNAVAILABLE.
        public var retryableStatusCodes: [String]

        public init(
            maxAttempts: Int = 3,
            initialBackoff: Duration = .milliseconds(100),
            maxBackoff: Duration = .seconds(1),
            backoffMultiplier: Double = 2,
            retryableStatusCodes: [String] = ["UNAVAILABLE"]
        ) {
            self.maxAttempts = maxAttempts
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.backoffMultiplier = backoffMultiplier
            self.retryableStatusCodes = retryableStatusCodes
        }

        public static var defaults: CallRetryPolicy { CallRetryPolicy() }
    }
}

/// How a call picks its connection among the healthy ones.
public struct BalancingPolicy: Sendable, Hashable, CustomStringConvertible {
    enum Value: String, Sendable, Hashable {
        case roundRobin
        case leastInFlight
        case leastBusy
    }

    let value: Value

    /// Each call takes the next healthy connection in turn.
    public static let roundRobin = BalancingPolicy(value: .roundRobin)
    /// Each call takes the healthy connection with the fewest calls in flight.
    public static let leastInFlight = BalancingPolicy(value: .leastInFlight)
    /// Each call takes the less busy of two healthy connections drawn at random (power of two
    /// choices), where busy is the expected wait: (calls in flight + 1) × the connection's
    /// recent latency (a moving average that jumps to any slower call and fades over the next few
    /// dozen calls, or over ten seconds without calls). A slow connection gets few calls, and a
    /// failure counts as a one-second call, so a connection that fails fast does not attract
    /// traffic for having nothing in flight.
    public static let leastBusy = BalancingPolicy(value: .leastBusy)

    public var description: String { self.value.rawValue }
}

/// What a call does when no connection of its pool is healthy.
public struct NoHealthyConnectionPolicy: Sendable, Hashable, CustomStringConvertible {
    enum Value: String, Sendable, Hashable {
        case waitUntilDeadline
        case failFast
        case useAnyConnection
    }

    let value: Value

    /// Wait for a connection to become healthy, until the call's deadline (then
    /// DEADLINE_EXCEEDED). The default.
    public static let waitUntilDeadline = NoHealthyConnectionPolicy(value: .waitUntilDeadline)
    /// Fail at once with UNAVAILABLE.
    public static let failFast = NoHealthyConnectionPolicy(value: .failFast)
    /// Use a connection anyway, in turn, and let the call fail or succeed on it.
    public static let useAnyConnection = NoHealthyConnectionPolicy(value: .useAnyConnection)

    public var description: String { self.value.rawValue }
}
