extension PoolManager {
    /// How one service is reached and pooled: pool size, reconnection, timeouts, keepalive,
    /// retries and compression, plus endpoints, TLS, health checking and balancing.
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
        /// Where the service runs. The connections are spread over the addresses the endpoints
        /// name (``Discovery``). Default: the one given to `init`.
        public var endpoints: [Endpoint]
        /// How `dns:` names are looked up again, and the client's id for subsetting.
        public var discovery: Discovery
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
        /// How long a connection attempt may take: a new channel's connect and first check
        /// before it takes a connection's place, and the core's minimum connect timeout.
        /// Default 30 s.
        public var timeout: Duration
        /// How long a call that has no deadline of its own, or a ``PoolManager/withConnection(to:timeout:_:)``
        /// lease, waits for a healthy connection with room. A call with a deadline waits until
        /// its deadline. Default 30 s.
        public var connectionWaitTimeout: Duration
        /// How long the calls on a connection leaving the pool, on a replaced channel, or on a
        /// pool shutting down gracefully may run on before their channel is closed. Default 30 s.
        public var drainTimeout: Duration
        /// The deadline of a call that sets none (GRPCCore's method-config timeout). Default
        /// `nil`: such calls have no deadline.
        public var defaultCallTimeout: Duration?
        /// Interval of HTTP/2 keepalive pings (`grpc.keepalive_time_ms`). Default 10 s.
        public var keepaliveTime: Duration
        /// How long to wait for a ping's answer before the connection is considered dead
        /// (`grpc.keepalive_timeout_ms`). Default 5 s.
        public var keepaliveTimeout: Duration
        /// Close a connection after this long without calls (`grpc.client_idle_timeout_ms`); the
        /// next call reconnects it. Default 5 minutes.
        public var maxConnectionIdle: Duration
        /// Retry calls that fail with a retryable code (``retryPolicy``; UNAVAILABLE by default)
        /// on the clients this pool hands out, each attempt picking a connection again, never past
        /// the call's deadline. The pool's transport retries every kind itself: a unary call's
        /// one message, a stream's parts until its first response (up to 256 KiB). A call that
        /// brings its own execution policy is left to grpc-swift. The core's own retries stay off
        /// (they would stay on the failing connection). Default `true`.
        public var enableRetries: Bool
        /// The retry policy applied to every method when ``enableRetries`` is on.
        public var retryPolicy: CallRetryPolicy
        /// Compress requests with gzip. Default `true`. A connection stops asking for gzip once
        /// its server refuses it; a bidirectional or client-streaming call asks for it only once
        /// the server has accepted it on that connection.
        public var compression: Bool
        /// Request messages of fewer bytes go out uncompressed, whatever ``compression`` or a
        /// call's own compression option says; `0` compresses every message. Default `2048`.
        ///
        /// gzip cannot help a small message: a few dozen bytes come out as large or larger, and a
        /// message under about two kilobytes fits in one or two TCP segments either way. Yet each
        /// compressed message costs the core a fresh deflate state of about 256 KiB, which made a
        /// 32-byte call cost up to twice its uncompressed CPU. 2048 is also Tomcat's and Spring
        /// Boot's default (`compressionMinSize`, `server.compression.min-response-size`).
        public var compressionThreshold: Int
        /// Plaintext or TLS. Default ``TransportSecurity/plaintext``: plaintext happens only when
        /// the configuration says so, and this default says so.
        public var transportSecurity: TransportSecurity
        /// Background health checking. Default: every 30 s, connectivity only.
        public var healthCheck: HealthCheck
        /// How a call picks its connection. Default ``BalancingPolicy/roundRobin`` ;
        /// ``BalancingPolicy/leastBusy`` routes around slow and failing connections.
        public var balancing: BalancingPolicy
        /// Streams one connection opens at most: its calls and `withConnection` leases, plus one
        /// kept for the pool's own health-check and keepalive RPC (so calls get
        /// `streamCapacity - 1`); a connection with no room is not picked. Default `100`, the
        /// common server limit on concurrent streams per HTTP/2 connection; at least 2.
        ///
        /// Keep it at or below the server's limit. Past it, calls queue inside the core rather
        /// than in the pool, and a grpc-swift (NIO) server closes the connection with
        /// PROTOCOL_ERROR, failing every call on it, when a client opens more than 100 streams:
        /// with its default configuration it enforces 100 without announcing any limit.
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
            self.discovery = .defaults
            self.poolSize = poolSize
            self.maxRetries = maxRetries
            self.retryDelay = retryDelay
            self.maxRetryDelay = .seconds(30)
            self.timeout = timeout
            self.connectionWaitTimeout = .seconds(30)
            self.drainTimeout = .seconds(30)
            self.defaultCallTimeout = nil
            self.keepaliveTime = keepaliveTime
            self.keepaliveTimeout = keepaliveTimeout
            self.maxConnectionIdle = maxConnectionIdle
            self.enableRetries = enableRetries
            self.retryPolicy = .defaults
            self.compression = compression
            self.compressionThreshold = 2048
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

        /// Calls and leases one connection carries at most: ``streamCapacity`` less the stream
        /// kept for the pool's own RPC.
        var callCapacity: Int { self.streamCapacity - 1 }

        /// Whether the channels use TLS.
        var usesTLS: Bool {
            if case .tls = self.transportSecurity.mode { return true }
            return false
        }

        /// The first endpoint's host.
        public var host: String { self.endpoints.first?.host ?? "" }
        /// The first endpoint's port.
        public var port: Int { self.endpoints.first?.port ?? 0 }
    }
}
