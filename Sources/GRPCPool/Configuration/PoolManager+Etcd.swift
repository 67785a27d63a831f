extension PoolManager.Discovery {
    /// The etcd cluster an `etcd:///<prefix>` endpoint is read from (grpc-go's etcd naming: one
    /// key per backend under `<prefix>/`, the value JSON `{"Addr":"host:port","Metadata":…}`).
    ///
    /// The pool keeps a small pool of its own to the cluster's members (one connection to each,
    /// health-checked like any pool), reads the prefix once, then follows it with etcd's Watch,
    /// resuming from the last revision it saw after any failure, on another member when one
    /// fails. While no member answers, the pool keeps its last backends.
    public struct Etcd: Sendable, Hashable {
        /// The cluster's members (`host:port`, 2379 by convention).
        public var endpoints: [PoolManager.Endpoint]
        /// The user and password of etcd's authentication, when it is on.
        public var username: String?
        public var password: String?
        /// Plaintext or TLS to the members. Default plaintext.
        public var transportSecurity: PoolManager.TransportSecurity
        /// How long a read of the prefix (and an authentication) may take. Default 5 s.
        public var requestTimeout: Duration
        /// The waits between attempts to reach the cluster again: from `retryInitial` doubling
        /// up to `retryMaximum`. Defaults 100 ms and 5 s.
        public var retryInitial: Duration
        public var retryMaximum: Duration

        public init(
            endpoints: [PoolManager.Endpoint],
            username: String? = nil,
            password: String? = nil,
            transportSecurity: PoolManager.TransportSecurity = .plaintext,
            requestTimeout: Duration = .seconds(5),
            retryInitial: Duration = .milliseconds(100),
            retryMaximum: Duration = .seconds(5)
        ) {
            self.endpoints = endpoints
            self.username = username
            self.password = password
            self.transportSecurity = transportSecurity
            self.requestTimeout = requestTimeout
            self.retryInitial = retryInitial
            self.retryMaximum = retryMaximum
        }

        /// The configuration of the pool to the members.
        var serviceConfig: PoolManager.ServiceConfig {
            var config = PoolManager.ServiceConfig(endpoints: self.endpoints, poolSize: max(self.endpoints.count, 1))
            config.transportSecurity = self.transportSecurity
            config.compression = false
            return config
        }
    }
}
