import Testing

@testable import GRPCPool

/// A connection as the picker sees it, fixed for one pick.
private final class Snapshot: PickCandidate, CustomStringConvertible {
    let name: String
    let isHealthy: Bool
    let load: Int
    let latency: Double?

    init(_ name: String, healthy: Bool = true, load: Int = 0, latency: Double? = nil) {
        (self.name, self.isHealthy, self.load, self.latency) = (name, healthy, load, latency)
    }

    func latencyEstimate(at now: ContinuousClock.Instant) -> Double? { self.latency }
    var description: String { self.name }
}

private func name(_ pick: Picker.Pick, in snapshots: [Snapshot]) -> String {
    switch pick {
    case .connection(let index): snapshots[index].name
    case .allAtCapacity: "allAtCapacity"
    case .noneHealthy: "noneHealthy"
    }
}

@Suite("Picker: balancing decisions over snapshots, no I/O")
struct PickerTests {
    /// One pick: the connections (u: unhealthy, f: full at capacity 4, else healthy with room),
    /// the start, and what is picked.
    struct Case: Sendable, CustomTestStringConvertible {
        let connections: String
        let start: Int
        let expected: String
        var testDescription: String { "[\(self.connections)] from \(self.start) → \(self.expected)" }

        fileprivate var snapshots: [Snapshot] {
            self.connections.split(separator: " ").map { token in
                let name = String(token.prefix { $0.isNumber })
                return Snapshot(name, healthy: !token.hasSuffix("u"), load: token.hasSuffix("f") ? 4 : 0)
            }
        }
    }

    static let now = ContinuousClock.now

    @Test(
        "Round robin: the first healthy connection with room from the rotating start",
        arguments: [
            Case(connections: "0 1 2", start: 0, expected: "0"),
            Case(connections: "0 1 2", start: 1, expected: "1"),
            Case(connections: "0 1 2", start: 5, expected: "2"),
            Case(connections: "0u 1 2", start: 0, expected: "1"),
            Case(connections: "0 1f 2", start: 1, expected: "2"),
            Case(connections: "0 1u 2f", start: 1, expected: "0"),
            Case(connections: "0f 1f 2u", start: 0, expected: "allAtCapacity"),
            Case(connections: "0u 1u 2u", start: 2, expected: "noneHealthy"),
            Case(connections: "", start: 0, expected: "noneHealthy"),
        ]
    )
    func roundRobin(_ pick: Case) {
        let picker = Picker(balancing: .roundRobin, capacity: 4)
        #expect(
            name(picker.pick(from: pick.snapshots, start: pick.start, now: Self.now), in: pick.snapshots)
                == pick.expected
        )
    }

    @Test("Least in flight: the least loaded with room; ties go to the first from the start")
    func leastInFlight() {
        let picker = Picker(balancing: .leastInFlight, capacity: 4)
        let loads = [Snapshot("0", load: 2), Snapshot("1", load: 1), Snapshot("2", load: 1), Snapshot("3", load: 3)]
        #expect(name(picker.pick(from: loads, start: 0, now: Self.now), in: loads) == "1")
        #expect(name(picker.pick(from: loads, start: 2, now: Self.now), in: loads) == "2", "the tie from index 2")
        let full = [Snapshot("0", load: 4), Snapshot("1", healthy: false), Snapshot("2", load: 3)]
        #expect(
            name(picker.pick(from: full, start: 0, now: Self.now), in: full) == "2",
            "full and unhealthy are skipped"
        )
        let none = [Snapshot("0", load: 4), Snapshot("1", load: 5)]
        #expect(name(picker.pick(from: none, start: 0, now: Self.now), in: none) == "allAtCapacity")
    }

    @Test("Least busy: of two candidates, the one with less (load + 1) × latency, whatever the draw")
    func leastBusyCost() {
        let picker = Picker(balancing: .leastBusy, capacity: 4)
        let pair = [Snapshot("slow", load: 0, latency: 100), Snapshot("fast", load: 2, latency: 1)]
        for start in 0..<50 {
            #expect(name(picker.pick(from: pair, start: start, now: Self.now), in: pair) == "fast", "draw \(start)")
        }
        // An unknown latency counts as the other's: load decides.
        let fresh = [Snapshot("new", load: 3, latency: nil), Snapshot("known", load: 1, latency: 5)]
        for start in 0..<50 {
            #expect(name(picker.pick(from: fresh, start: start, now: Self.now), in: fresh) == "known", "draw \(start)")
        }
    }

    @Test("Least busy: one candidate with room is picked; none healthy, or all full, says which")
    func leastBusyEdges() {
        let picker = Picker(balancing: .leastBusy, capacity: 4)
        let one = [Snapshot("0", healthy: false), Snapshot("1", load: 1, latency: 50), Snapshot("2", load: 4)]
        for start in 0..<20 {
            #expect(name(picker.pick(from: one, start: start, now: Self.now), in: one) == "1", "draw \(start)")
        }
        #expect(
            name(picker.pick(from: [Snapshot("0", load: 9)], start: 0, now: Self.now), in: [Snapshot("0", load: 9)])
                == "allAtCapacity"
        )
        #expect(
            name(
                picker.pick(from: [Snapshot("0", healthy: false)], start: 0, now: Self.now),
                in: [Snapshot("0", healthy: false)]
            ) == "noneHealthy"
        )
        #expect(name(picker.pick(from: [Snapshot]([]), start: 0, now: Self.now), in: [Snapshot]([])) == "noneHealthy")
    }

    @Test("Least busy: among equal connections the draws spread the picks over all of them")
    func leastBusySpread() {
        let picker = Picker(balancing: .leastBusy, capacity: 4)
        let equal = (0..<4).map { Snapshot("\($0)", load: 0, latency: 2) }
        var counts: [String: Int] = [:]
        for start in 0..<4000 {
            counts[name(picker.pick(from: equal, start: start, now: Self.now), in: equal), default: 0] += 1
        }
        #expect(counts.count == 4, "\(counts)")
        #expect(counts.values.allSatisfy { $0 > 600 }, "each gets a fair part of 1000: \(counts)")
    }
}
