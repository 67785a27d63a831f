import Testing

@testable import GRPCPool

@Suite("AddressPlan: spreading, subsetting and following changes, no I/O")
struct AddressPlanTests {
    static func backends(_ count: Int) -> [String] {
        (1...count).map { "ipv4:10.0.0.\($0):50051" }
    }

    static func counts(_ placed: [String?]) -> [String: Int] {
        placed.compactMap(\.self).reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    struct Spread: Sendable, CustomTestStringConvertible {
        let connections: Int
        let addresses: Int
        var testDescription: String { "\(connections) connections over \(addresses) addresses" }
    }

    @Test(
        "Every address gets ⌊N/M⌋ or ⌈N/M⌉ connections",
        arguments: [
            Spread(connections: 6, addresses: 3), Spread(connections: 7, addresses: 3),
            Spread(connections: 3, addresses: 3), Spread(connections: 2, addresses: 3),
            Spread(connections: 1, addresses: 1), Spread(connections: 10, addresses: 4),
            Spread(connections: 64, addresses: 5),
        ]
    )
    func spreads(_ spread: Spread) {
        let addresses = Self.backends(spread.addresses)
        let placed = AddressPlan.assign(Array(repeating: nil, count: spread.connections), over: addresses)
        let counts = Self.counts(placed)
        #expect(placed.allSatisfy { $0 != nil })
        let low = spread.connections / spread.addresses
        let high = low + (spread.connections % spread.addresses == 0 ? 0 : 1)
        for address in addresses {
            #expect((low...high).contains(counts[address] ?? 0), "\(address): \(counts[address] ?? 0)")
        }
    }

    @Test("From nothing, connections go to the addresses in turn")
    func inTurn() {
        let placed = AddressPlan.assign(Array(repeating: nil, count: 6), over: ["a", "b", "c"])
        #expect(placed == ["a", "b", "c", "a", "b", "c"])
    }

    @Test("A new address takes one connection of the last address at its share, nothing else moves")
    func addedAddress() {
        let current: [String?] = ["a", "b", "c", "a", "b", "c"]
        let placed = AddressPlan.assign(current, over: ["a", "b", "c", "d"])
        #expect(placed == ["a", "b", "c", "a", "b", "d"])
    }

    @Test("Two new addresses among 12 connections: each gets its share, taken from the others")
    func addedAddresses() {
        let current: [String?] = Array(repeating: ["a", "b", "c"], count: 4).flatMap { $0 }
        let placed = AddressPlan.assign(current, over: ["a", "b", "c", "d", "e"])
        #expect(Self.counts(placed) == ["a": 3, "b": 3, "c": 2, "d": 2, "e": 2])
        #expect(zip(current, placed).filter { $0 != $1 }.count == 4)
    }

    @Test("The connections of a removed address move to the others; the others stay")
    func removedAddress() {
        let current: [String?] = ["a", "b", "c", "d", "a", "b"]
        let placed = AddressPlan.assign(current, over: ["a", "b", "c"])
        #expect(placed == ["a", "b", "c", "c", "a", "b"])
    }

    @Test("A plan that is already even moves nothing")
    func stable() {
        let current: [String?] = ["a", "b", "c", "a", "b", "c", "a"]
        #expect(AddressPlan.assign(current, over: ["c", "b", "a"]) == current)
    }

    @Test("A connection with a share to spare elsewhere does not move to a fuller address")
    func grownPool() {
        // A pool that grows from 2 to 4 over 3 addresses: the new ones go to the emptiest.
        let placed = AddressPlan.assign(["a", "b", nil, nil], over: ["a", "b", "c"])
        #expect(placed == ["a", "b", "c", "a"])
    }

    @Test("With no addresses nothing moves")
    func noAddresses() {
        #expect(AddressPlan.assign(["a", nil], over: []) == ["a", nil])
    }

    @Test("Fewer connections than addresses: each on a different address")
    func distinct() {
        let placed = AddressPlan.assign(Array(repeating: nil, count: 4), over: Self.backends(24))
        #expect(Set(placed.compactMap(\.self)).count == 4)
    }

    @Test("Subsetting: 12 clients of 4 connections over 24 backends put 2 on every backend")
    func subsetsEvenly() {
        let backends = Self.backends(24)
        var load: [String: Int] = [:]
        for client in 0..<12 {
            let subset = AddressPlan.subset(of: backends, size: 4, clientIndex: UInt64(client))
            #expect(Set(subset).count == 4)
            for address in AddressPlan.assign(Array(repeating: nil, count: 4), over: subset) {
                load[address!, default: 0] += 1
            }
        }
        let mean = 12.0 * 4 / 24
        for backend in backends {
            #expect(abs(Double(load[backend] ?? 0) - mean) <= 1, "\(backend): \(load[backend] ?? 0)")
        }
    }

    @Test(
        "Subsetting stays within ±1 of the mean for other shapes",
        arguments: [(10, 3, 7), (30, 5, 20), (7, 2, 9), (50, 8, 64)]
    )
    func subsetsWithinOne(clients: Int, size: Int, backendCount: Int) {
        let backends = Self.backends(backendCount)
        var load: [String: Int] = [:]
        // Whole rounds of clients: ⌊M/N⌋ per round.
        let perRound = backendCount / size
        let total = (clients / perRound) * perRound
        for client in 0..<total {
            for address in AddressPlan.subset(of: backends, size: size, clientIndex: UInt64(client)) {
                load[address, default: 0] += 1
            }
        }
        let mean = Double(total * size) / Double(backendCount)
        let spread = backends.map { Double(load[$0] ?? 0) }
        // A round that does not use every backend leaves some out; over many rounds the
        // shuffles even it out. Within ±1 when the size divides the count, within 2 otherwise.
        let bound = backendCount % size == 0 ? 1.0 : 2.0 + Double(total / perRound) / 4
        #expect(spread.allSatisfy { abs($0 - mean) <= bound }, "mean \(mean): \(spread)")
    }

    @Test("Subsetting is deterministic and ignores the order addresses come in")
    func subsetDeterministic() {
        let backends = Self.backends(24)
        let one = AddressPlan.subset(of: backends, size: 4, clientIndex: 7)
        let two = AddressPlan.subset(of: backends.reversed(), size: 4, clientIndex: 7)
        #expect(one == two)
        #expect(AddressPlan.subset(of: backends, size: 4, clientIndex: 8) != one)
    }

    @Test("No subsetting when there are no more addresses than connections")
    func noSubset() {
        #expect(AddressPlan.subset(of: ["b", "a", "c"], size: 3, clientIndex: 5) == ["a", "b", "c"])
        #expect(AddressPlan.subset(of: ["b", "a"], size: 6, clientIndex: 5) == ["a", "b"])
    }

    @Test(
        "A client's index: the number its id ends with, else a stable hash",
        arguments: [("api-0", 0), ("api-17", 17), ("pod-3", 3), ("7", 7)] as [(String, UInt64)]
    )
    func clientIndex(id: String, index: UInt64) {
        #expect(AddressPlan.clientIndex(of: id) == index)
    }

    @Test("An id without a number hashes the same way every time")
    func hashedIndex() {
        #expect(AddressPlan.clientIndex(of: "billing") == AddressPlan.clientIndex(of: "billing"))
        #expect(AddressPlan.clientIndex(of: "billing") != AddressPlan.clientIndex(of: "billinh"))
    }
}
