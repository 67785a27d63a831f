extension PoolManager.ServiceConfig {
    /// What a target that did not parse should look like.
    static func targetSyntax(_ target: String) -> String {
        if target.hasPrefix("dns+srv:") { return "must be dns+srv:[//server[:port]/]name, the name without a port" }
        if target.hasPrefix("etcd:") { return "must be etcd:///prefix, with a prefix" }
        return "must be dns:[//server[:port]/]host[:port] with a port between 1 and 65535"
    }

    /// An `etcd:` endpoint needs a cluster to read it from, and the cluster's settings must hold.
    func validateRegistry() throws(ConfigurationError) {
        let needsEtcd = self.endpoints.contains {
            if case .registry = ServiceTarget($0) { true } else { false }
        }
        guard let etcd = self.discovery.etcd else {
            guard !needsEtcd else {
                throw ConfigurationError(
                    field: "discovery.etcd",
                    value: "nil",
                    reason: "an etcd:/// endpoint needs the etcd cluster's endpoints"
                )
            }
            return
        }
        if (etcd.username == nil) != (etcd.password == nil) {
            throw ConfigurationError(
                field: etcd.username == nil ? "discovery.etcd.username" : "discovery.etcd.password",
                value: "nil",
                reason: "username and password go together"
            )
        }
        try Self.positive(etcd.requestTimeout, "discovery.etcd.requestTimeout")
        try Self.positive(etcd.retryInitial, "discovery.etcd.retryInitial")
        guard etcd.retryInitial <= etcd.retryMaximum else {
            throw ConfigurationError(
                field: "discovery.etcd.retryMaximum",
                value: "\(etcd.retryMaximum)",
                reason: "must not be shorter than discovery.etcd.retryInitial (\(etcd.retryInitial))"
            )
        }
        do {
            _ = try etcd.serviceConfig.validated()
        } catch {
            throw ConfigurationError(field: "discovery.etcd.\(error.field)", value: error.value, reason: error.reason)
        }
        for endpoint in etcd.endpoints {
            if case .registry = ServiceTarget(endpoint) {
                throw ConfigurationError(
                    field: "discovery.etcd.endpoints",
                    value: "\(endpoint)",
                    reason: "the cluster's own members cannot be found through etcd"
                )
            }
        }
    }
}
