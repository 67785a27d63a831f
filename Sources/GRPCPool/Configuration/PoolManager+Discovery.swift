extension PoolManager {
    /// How a pool finds the addresses behind its endpoints, and spreads its connections over them.
    ///
    /// Every endpoint names one or more addresses: `host:port` one (the core resolves the host
    /// when it connects), `ipv4:a:p,b:p` / `ipv6:[a]:p,[b]:p` each address in the list,
    /// `unix:/path` one, `dns:[//server/]name:port` the A and AAAA records of `name`, and
    /// `dns+srv:[//server/]_service._proto.name` the SRV records of the name (each target's
    /// addresses on the record's port), which the pool looks up itself with c-ares (at `server`
    /// when the target names one, otherwise with the system's configuration) and again every
    /// ``resolutionInterval``. The pool's connections are spread over all the addresses: each
    /// gets ⌊N/M⌋ or ⌈N/M⌉ of N connections (an SRV record's its weight's share); with fewer
    /// connections than addresses, each address at most one, chosen by deterministic subsetting
    /// keyed by ``clientID``.
    ///
    /// When the addresses change, the connections on an address that went away, or on one with
    /// more than its share, move to the new ones: the new channel connects (and passes its health
    /// check) before the old one stops taking calls, and the old one closes once its calls have
    /// finished. A lookup that fails, or finds nothing, keeps the last addresses found.
    public struct Discovery: Sendable, Hashable {
        /// How often names are looked up again; sooner, at the answer's TTL, when that is shorter.
        /// Default 30 s.
        public var resolutionInterval: Duration
        /// The least time between two lookups of the pool's names: a connection that fails asks
        /// for a lookup at once, but no sooner than this after the last one. Default 5 s.
        public var minResolutionInterval: Duration
        /// How long one lookup may take. Default 5 s.
        public var resolutionTimeout: Duration
        /// What this client process is called (the pod's name, say), for subsetting: clients with
        /// consecutive numbers at the end of their ids (`api-0`, `api-1`, …) together use every
        /// address evenly. Default `nil`: the host's name.
        public var clientID: String?
        /// The etcd cluster that `etcd:///<prefix>` endpoints are read from. Default `nil`.
        public var etcd: Etcd?

        public init(
            resolutionInterval: Duration = .seconds(30),
            minResolutionInterval: Duration = .seconds(5),
            resolutionTimeout: Duration = .seconds(5),
            clientID: String? = nil,
            etcd: Etcd? = nil
        ) {
            self.resolutionInterval = resolutionInterval
            self.minResolutionInterval = minResolutionInterval
            self.resolutionTimeout = resolutionTimeout
            self.clientID = clientID
            self.etcd = etcd
        }

        public static var defaults: Discovery { Discovery() }
    }
}
