internal import Foundation

/// The backends an etcd prefix holds, as last read and watched, and the revision they are at.
/// Pure: the follower feeds it what etcd sent and publishes what it holds; the rules (grpc-go's
/// etcd naming, which values are skipped, where a watch resumes) are tested without a network.
struct RegistryState: Sendable {
    /// What etcd sent about one key.
    enum Change: Sendable, Hashable {
        case put(key: String, value: Data, revision: Int64)
        case delete(key: String, revision: Int64)
    }

    /// A key whose value names no backend, and why.
    struct Skipped: Sendable, Hashable, CustomStringConvertible {
        var key: String
        var reason: String

        var description: String { "\(self.key): \(self.reason)" }
    }

    /// The keys' prefix: the target's, with its `/` (grpc-go's naming: `<target>/<id>`).
    let prefix: String
    /// Each key that names a backend, and the core target of that backend.
    private(set) var backends: [String: String] = [:]
    /// The last revision whose changes are all in ``backends``; a watch resumes after it.
    private(set) var revision: Int64 = 0
    /// Whether the prefix must be read whole before the next watch: at first, and after etcd
    /// compacted the history a watch would resume from.
    private(set) var needsSnapshot = true

    init(prefix: String) {
        self.prefix = prefix.hasSuffix("/") ? prefix : prefix + "/"
    }

    /// The end of the prefix's key range (etcd's `range_end`): the prefix with its last byte
    /// that is not 0xff incremented, and what follows it cut.
    static func rangeEnd(of prefix: String) -> Data {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return Data(bytes)
            }
            bytes.removeLast()
        }
        return Data([0])
    }

    /// Every backend address, each once, sorted.
    var addresses: [String] { Array(Set(self.backends.values)).sorted() }

    /// Replaces what it holds with a read of the whole prefix at `revision`.
    mutating func load(_ pairs: [(key: String, value: Data)], revision: Int64) -> [Skipped] {
        self.backends = [:]
        var skipped: [Skipped] = []
        for (key, value) in pairs {
            switch Self.address(of: value) {
            case .success(let address): self.backends[key] = address
            case .failure(let reason): skipped.append(Skipped(key: key, reason: reason.description))
            }
        }
        self.revision = revision
        self.needsSnapshot = false
        return skipped
    }

    /// Applies a watch's changes, in order.
    mutating func apply(_ changes: [Change]) -> [Skipped] {
        var skipped: [Skipped] = []
        for change in changes {
            switch change {
            case .put(let key, let value, let revision):
                switch Self.address(of: value) {
                case .success(let address):
                    self.backends[key] = address
                case .failure(let reason):
                    // A key whose new value is bad no longer names a backend.
                    self.backends[key] = nil
                    skipped.append(Skipped(key: key, reason: reason.description))
                }
                self.revision = max(self.revision, revision)
            case .delete(let key, let revision):
                self.backends[key] = nil
                self.revision = max(self.revision, revision)
            }
        }
        return skipped
    }

    /// A watch response with no change says every change up to `revision` has been sent.
    mutating func progressed(to revision: Int64) {
        self.revision = max(self.revision, revision)
    }

    /// etcd compacted its history past the revision a watch asked to resume from.
    mutating func compacted() {
        self.needsSnapshot = true
    }

    struct Reason: Error, CustomStringConvertible {
        var description: String
    }

    /// The core target a registration names: `{"Addr":"host:port", …}` (grpc-go's
    /// `endpoints.Endpoint`; `Metadata` and other fields are ignored).
    static func address(of value: Data) -> Result<String, Reason> {
        struct Registration: Decodable {
            var addr: String
            enum CodingKeys: String, CodingKey { case addr = "Addr" }
        }
        let registration: Registration
        do {
            registration = try JSONDecoder().decode(Registration.self, from: value)
        } catch {
            let text = String(decoding: value.prefix(80), as: UTF8.self)
            return .failure(Reason(description: "not grpc-go's {\"Addr\":\"host:port\"} JSON: \(text)"))
        }
        let addr = registration.addr
        guard let (host, port) = ServiceTarget.hostAndPort(Substring(addr), defaultPort: 0), !host.isEmpty,
            port > 0
        else {
            return .failure(Reason(description: "Addr \"\(addr)\" is not host:port with a port between 1 and 65535"))
        }
        return .success(DNSResolver.isIPLiteral(host) ? ServiceTarget.address(ip: host, port: port) : "\(host):\(port)")
    }
}
