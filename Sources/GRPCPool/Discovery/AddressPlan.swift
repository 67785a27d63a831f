/// Which address each connection of a pool goes to. Pure: spreading, subsetting and following
/// changes are decided here, from the addresses and the current placement, and tested without a
/// network; the pool carries the moves out.
enum AddressPlan {
    /// The addresses a client with `size` connections uses out of `addresses`: all of them when
    /// there are no more than `size`; otherwise `size` of them, chosen by deterministic
    /// subsetting (Google SRE, "Load Balancing in the Datacenter"): the clients are taken in
    /// rounds of `addresses.count / size`; every client of a round shuffles the sorted addresses
    /// the same way (drawn from the round's number) and takes its own slice of `size`. A round of
    /// clients with consecutive indices uses every address once (when `size` divides the count),
    /// so K such clients put `K × size / M` connections on every one of M addresses, ±1.
    static func subset(of addresses: [String], size: Int, clientIndex: UInt64) -> [String] {
        let sorted = Array(Set(addresses)).sorted()
        guard size > 0, sorted.count > size else { return sorted }
        let subsetsPerRound = UInt64(sorted.count / size)
        let round = clientIndex / subsetsPerRound
        var generator = SplitMix64(state: round)
        let shuffled = sorted.shuffled(using: &generator)
        let start = Int(clientIndex % subsetsPerRound) * size
        return Array(shuffled[start..<(start + size)])
    }

    /// The index of a client for ``subset(of:size:clientIndex:)``: the number at the end of its
    /// id when there is one (a StatefulSet's pods are `api-0`, `api-1`, …: consecutive indices,
    /// the even spread), otherwise a hash of the id (an even spread on average only).
    static func clientIndex(of id: String) -> UInt64 {
        let digits = id.reversed().prefix { $0.isASCII && $0.isNumber }
        if !digits.isEmpty, digits.count <= 18, let number = UInt64(String(digits.reversed())) { return number }
        // FNV-1a: stable across processes and runs, unlike `Hasher`.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in id.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return hash
    }

    /// Places `current.count` connections on `addresses` in the shares their `weights` give
    /// (an address missing from `weights` weighs 1; when all weigh 0 they weigh alike): every
    /// address gets its exact share rounded down, and the connections left go to the largest
    /// remainders (among equals, to the addresses that already have the most, so that as few as
    /// possible move), so equal weights give every address ⌊N/M⌋ or ⌈N/M⌉ of the N. A connection
    /// stays where it is whenever its address is still listed and not over its share; the others
    /// move, in index order, to the addresses short of theirs, each to the emptiest for its
    /// weight (the first listed among equals), so that the first connections, the ones a pool
    /// that grows uses first, are spread too. `current[i]` is connection `i`'s address now, or
    /// `nil` when it has none yet. With no addresses, nothing moves.
    static func assign(_ current: [String?], over addresses: [String], weights: [String: Double] = [:]) -> [String?] {
        var seen = Set<String>()
        let addresses = addresses.filter { seen.insert($0).inserted }
        guard !addresses.isEmpty else { return current }
        let given = addresses.map { max(weights[$0] ?? 1, 0) }
        let total = given.reduce(0, +)
        let weight = total > 0 ? given : given.map { _ in 1 }
        let sum = total > 0 ? total : Double(addresses.count)
        var have: [String: Int] = [:]
        for address in current.compactMap(\.self) { have[address, default: 0] += 1 }
        let exact = weight.map { Double(current.count) * $0 / sum }
        var shares = exact.map { Int($0.rounded(.down)) }
        let left = current.count - shares.reduce(0, +)
        // Remainders within rounding error of each other count as equal.
        let remainder = addresses.indices.map { ((exact[$0] - Double(shares[$0])) * 1e9).rounded() }
        let larger = addresses.indices
            .sorted {
                (remainder[$0], have[addresses[$0]] ?? 0, -$0) > (remainder[$1], have[addresses[$1]] ?? 0, -$1)
            }
            .prefix(left)
        for index in larger { shares[index] += 1 }
        var room = [String: Int](uniqueKeysWithValues: zip(addresses, shares).map { ($0, $1) })
        var placed = [String?](repeating: nil, count: current.count)
        for (index, address) in current.enumerated() {
            guard let address, let left = room[address], left > 0 else { continue }
            placed[index] = address
            room[address] = left - 1
        }
        var count = [String: Int](uniqueKeysWithValues: addresses.map { ($0, 0) })
        for address in placed.compactMap(\.self) { count[address]! += 1 }
        let weightOf = [String: Double](uniqueKeysWithValues: zip(addresses, weight).map { ($0, max($1, 1e-9)) })
        for index in placed.indices where placed[index] == nil {
            // The emptiest address for its weight with room, the first listed among equals.
            guard
                let address = addresses.filter({ room[$0]! > 0 })
                    .min(by: { Double(count[$0]!) / weightOf[$0]! < Double(count[$1]!) / weightOf[$1]! })
            else { break }
            placed[index] = address
            room[address]! -= 1
            count[address]! += 1
        }
        return placed
    }
}
