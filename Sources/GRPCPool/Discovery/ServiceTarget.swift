/// What an endpoint names, as the pool finds its addresses: each address is a core target of
/// its own (`ipv4:10.0.0.1:50051`), so that every connection of the pool goes to one address and
/// the pool, not the core's `pick_first`, spreads them.
enum ServiceTarget: Sendable, Hashable {
    /// Addresses known without a lookup: each address of an `ipv4:`/`ipv6:` list, a `unix:`
    /// path, or a `host:port` (one address; the core resolves the host when it connects).
    case fixed([String])
    /// A DNS name the pool looks up, and looks up again on an interval: at `server` (`ip:port`,
    /// from the target's authority) or with the system's configuration.
    case dns(server: DNSServer?, name: Name)
    /// An `etcd:///<prefix>` target: the backends registered under `<prefix>/` in the etcd
    /// cluster of ``PoolManager/Discovery/etcd``, followed with etcd's Watch.
    case registry(prefix: String)

    /// What a `dns:` or `dns+srv:` target asks for.
    enum Name: Sendable, Hashable, CustomStringConvertible {
        /// `dns:`: the host's A and AAAA records, every address on `port`.
        case host(String, port: Int)
        /// `dns+srv:`: the name's SRV records, each target's addresses on the record's port.
        case service(String)

        var description: String {
            switch self {
            case .host(let host, let port): ServiceTarget.authority(host: host, port: port)
            case .service(let name): name
            }
        }
    }

    /// A DNS server given in a target's authority.
    struct DNSServer: Sendable, Hashable, CustomStringConvertible {
        var host: String
        var port: Int

        var description: String {
            self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
        }
    }

    /// The port gRPC assumes when a `dns:` target names none.
    static let defaultPort = 443

    /// Parses `endpoint`; `nil` when its target is a `dns:` target that names no host, a bad
    /// port, or an authority that is not `ip[:port]`.
    init?(_ endpoint: PoolManager.Endpoint) {
        guard let target = endpoint.target else {
            self = .fixed([endpoint.description])
            return
        }
        if let list = Self.strip("ipv4:", from: target) ?? Self.strip("ipv6:", from: target) {
            let scheme = target.prefix(5)
            let addresses = list.split(separator: ",").map { "\(scheme)\($0.trimmingSpaces)" }
            guard !addresses.isEmpty else { return nil }
            self = .fixed(addresses)
            return
        }
        if let path = Self.strip("etcd:///", from: target) {
            let prefix = path.hasSuffix("/") ? String(path.dropLast()) : path
            guard !prefix.isEmpty else { return nil }
            self = .registry(prefix: prefix)
            return
        }
        if target.hasPrefix("etcd:") { return nil }
        let service = Self.strip("dns+srv:", from: target)
        guard let rest = service ?? Self.strip("dns:", from: target) else {
            // unix:, unix-abstract:, vsock: and anything else the core resolves: one address.
            self = .fixed([target])
            return
        }
        var server: DNSServer?
        var name = Substring(rest)
        if name.hasPrefix("//") {
            name = name.dropFirst(2)
            guard let slash = name.firstIndex(of: "/") else { return nil }
            let authority = name[..<slash]
            name = name[name.index(after: slash)...]
            if !authority.isEmpty {
                guard let parsed = Self.hostAndPort(authority, defaultPort: 53) else { return nil }
                server = DNSServer(host: parsed.host, port: parsed.port)
            }
        }
        if service != nil {
            // An SRV name carries no port: each record gives its own.
            guard !name.isEmpty, !name.contains(":"), !name.contains("/") else { return nil }
            self = .dns(server: server, name: .service(String(name)))
            return
        }
        guard let (host, port) = Self.hostAndPort(name, defaultPort: Self.defaultPort), !host.isEmpty else {
            return nil
        }
        self = .dns(server: server, name: .host(host, port: port))
    }

    private static func strip(_ scheme: String, from target: String) -> String? {
        target.hasPrefix(scheme) ? String(target.dropFirst(scheme.count)) : nil
    }

    /// `host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6 address.
    static func hostAndPort(_ text: Substring, defaultPort: Int) -> (host: String, port: Int)? {
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let after = text[text.index(after: close)...]
            if after.isEmpty { return (host, defaultPort) }
            guard after.hasPrefix(":"), let port = Int(after.dropFirst()), (1...65535).contains(port) else {
                return nil
            }
            return (host, port)
        }
        let colons = text.count { $0 == ":" }
        if colons == 0 { return (String(text), defaultPort) }
        if colons > 1 { return (String(text), defaultPort) }
        let colon = text.firstIndex(of: ":")!
        guard let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else { return nil }
        return (String(text[..<colon]), port)
    }

    /// `host:port`, with an IPv6 host in brackets: the `:authority` of calls to a name.
    static func authority(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// The core target of one resolved IP address.
    static func address(ip: String, port: Int) -> String {
        ip.contains(":") ? "ipv6:[\(ip)]:\(port)" : "ipv4:\(ip):\(port)"
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return text
    }
}
