internal import GRPCPoolCoreBridge

/// Where one connection goes: one address, the endpoint that named it, and the authority its
/// calls carry when the address was found by name.
struct Placement: Sendable, Hashable {
    /// The core target of one address (`ipv4:10.0.0.1:50051`), or the endpoint's own target
    /// until its name has been looked up.
    var address: String
    /// The configured endpoint.
    var endpoint: PoolManager.Endpoint
    /// `name:port` for an address a `dns:` lookup found: the `:authority` of its calls, and (as
    /// `name`) the name its TLS certificate is checked against.
    var authority: String?
    /// Its share of the connections relative to the other addresses' (an SRV record's weight);
    /// 1 for every address found otherwise.
    var weight: Double = 1

    /// The endpoint as given: what a connection uses before (or without) a lookup.
    init(endpoint: PoolManager.Endpoint) {
        self.address = endpoint.description
        self.endpoint = endpoint
        self.authority = nil
    }

    init(address: String, endpoint: PoolManager.Endpoint, authority: String?, weight: Double = 1) {
        self.address = address
        self.endpoint = endpoint
        self.authority = authority
        self.weight = weight
    }

    /// `options` for a channel to this address.
    func channelOptions(_ options: ChannelOptions, tls: Bool) -> ChannelOptions {
        guard let authority else { return options }
        var options = options
        options.defaultAuthority = options.defaultAuthority ?? authority
        if tls, options.sslTargetNameOverride == nil,
            let (host, _) = ServiceTarget.hostAndPort(Substring(authority), defaultPort: ServiceTarget.defaultPort)
        {
            options.sslTargetNameOverride = host
        }
        return options
    }
}
