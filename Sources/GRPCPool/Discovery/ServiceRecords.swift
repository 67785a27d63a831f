/// Which of a name's SRV records the pool uses, and in what shares. Pure: the lookup brings the
/// records and their targets' addresses; RFC 2782's rules are applied here and tested without a
/// network.
enum ServiceRecords {
    /// One SRV record and what its target resolved to (`nil` when its lookup failed).
    struct Record: Sendable, Hashable {
        var target: String
        var port: Int
        var priority: Int
        var weight: Int
        var addresses: [String]?
    }

    /// One address to place connections on: its core target, the authority its calls carry,
    /// and its share of the connections relative to the others'.
    struct Share: Sendable, Hashable {
        var address: String
        var authority: String
        var weight: Double
    }

    /// The shares of the records of the lowest priority value (the most preferred) that has any
    /// address: a record of a later priority is used only when every record before it is gone.
    /// A record's weight is split evenly over its target's addresses; when every weight of that
    /// priority is 0, they count alike. An address that two records name gets both shares.
    static func shares(of records: [Record]) -> [Share] {
        let usable = records.filter { !($0.addresses ?? []).isEmpty }
        guard let priority = usable.map(\.priority).min() else { return [] }
        let chosen = usable.filter { $0.priority == priority }
        let alike = chosen.allSatisfy { $0.weight == 0 }
        var shares: [Share] = []
        var index: [String: Int] = [:]
        for record in chosen {
            let addresses = Array(Set(record.addresses ?? [])).sorted()
            let weight = Double(alike ? 1 : record.weight) / Double(addresses.count)
            let authority = ServiceTarget.authority(host: record.target, port: record.port)
            for ip in addresses {
                let address = ServiceTarget.address(ip: ip, port: record.port)
                if let existing = index[address] {
                    shares[existing].weight += weight
                } else {
                    index[address] = shares.count
                    shares.append(Share(address: address, authority: authority, weight: weight))
                }
            }
        }
        return shares.sorted { $0.address < $1.address }
    }
}
