/// The addresses a pool's endpoints name, as last found, and where its connections go over them.
/// A value: the pool keeps it behind a lock and asks it for plans; lookups update it.
struct AddressBook: Sendable {
    /// Per endpoint, what it names.
    let targets: [ServiceTarget]
    /// Per endpoint, the addresses found last: fixed ones from the start; a `dns:` name's own
    /// target (the core resolves it) until its first lookup succeeds.
    private(set) var found: [[Placement]]
    /// Per endpoint, whether its name has been looked up successfully.
    private(set) var resolved: [Bool]
    /// Lookups that failed or found nothing.
    var failures = 0
    /// The subsetting index of this client (``AddressPlan/clientIndex(of:)``).
    let clientIndex: UInt64

    init(endpoints: [PoolManager.Endpoint], clientID: String) {
        var targets: [ServiceTarget] = []
        var found: [[Placement]] = []
        for endpoint in endpoints {
            let target = ServiceTarget(endpoint) ?? .fixed([endpoint.description])
            targets.append(target)
            switch target {
            case .fixed(let addresses):
                found.append(addresses.map { Placement(address: $0, endpoint: endpoint, authority: nil) })
            case .dns, .registry:
                found.append([Placement(endpoint: endpoint)])
            }
        }
        self.targets = targets
        self.found = found
        self.resolved = targets.map { if case .fixed = $0 { true } else { false } }
        self.clientIndex = AddressPlan.clientIndex(of: clientID)
    }

    /// Whether any endpoint names a `dns:` or `dns+srv:` name (then the pool looks names up).
    var hasNames: Bool { self.targets.contains { if case .dns = $0 { true } else { false } } }

    /// The endpoints read from etcd: their indices and prefixes.
    var registries: [(index: Int, prefix: String)] {
        self.targets.enumerated().compactMap { index, target in
            if case .registry(let prefix) = target { (index, prefix) } else { nil }
        }
    }

    /// Every address, each once, in the endpoints' order.
    var placements: [Placement] {
        var seen = Set<String>()
        return self.found.joined().filter { seen.insert($0.address).inserted }
    }

    var addresses: [String] { self.placements.map(\.address) }

    /// Records what a lookup of endpoint `index` found; whether that changed its addresses.
    mutating func update(endpoint index: Int, to placements: [Placement]) -> Bool {
        let wasResolved = self.resolved[index]
        self.resolved[index] = true
        guard Set(placements) != Set(self.found[index]) else { return !wasResolved }
        self.found[index] = placements
        return true
    }

    /// Where the connections go: `current[i]` is where connection `i` of the working set is
    /// now; `size` is the most connections the pool can have (its subset of addresses is that
    /// large, so that growing the pool does not change it).
    func plan(for current: [Placement?], size: Int) -> [Placement?] {
        let placements = self.placements
        let byAddress = Dictionary(placements.map { ($0.address, $0) }, uniquingKeysWith: { first, _ in first })
        let subset = AddressPlan.subset(of: placements.map(\.address), size: size, clientIndex: self.clientIndex)
        // Keep the endpoints' order among the subset: the first connections go to the first.
        let ordered = placements.map(\.address).filter(Set(subset).contains)
        let weights = byAddress.mapValues(\.weight)
        return AddressPlan.assign(current.map { $0?.address }, over: ordered, weights: weights).map {
            $0.flatMap { byAddress[$0] }
        }
    }
}
