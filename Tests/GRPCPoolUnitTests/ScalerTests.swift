import Testing

@testable import GRPCPool

@Suite("Scaler: dynamic sizing decisions, no I/O")
struct ScalerTests {
    static let scaling = PoolManager.Scaling(
        targetInFlight: 10...50,
        interval: .seconds(1),
        scaleUpCooldown: .seconds(5),
        scaleDownReadings: 3
    )
    static let start = ContinuousClock.now

    /// One reading: the demand, the active connections, seconds since the start, and the decision.
    struct Reading: Sendable, CustomTestStringConvertible {
        let demand: Int
        let active: Int
        let second: Int
        let decision: Scaler.Decision
        var testDescription: String { "\(demand) over \(active) at \(second) s → \(decision)" }
    }

    static func run(_ readings: [Reading], minimum: Int = 2, maximum: Int = 8) {
        var scaler = Scaler(minimum: minimum, maximum: maximum, scaling: Self.scaling)
        for (index, reading) in readings.enumerated() {
            let decision = scaler.reading(
                demand: reading.demand,
                active: reading.active,
                at: Self.start.advanced(by: .seconds(reading.second))
            )
            #expect(decision == reading.decision, "reading \(index): \(reading.testDescription), got \(decision)")
        }
    }

    @Test("Within the band nothing changes", arguments: [20, 40, 100])
    func inBand(demand: Int) {
        Self.run([Reading(demand: demand, active: 2, second: 0, decision: .stay)])
    }

    @Test("Above the band it grows at once to what brings the demand back into the band")
    func growsToTheBand() {
        // 240 calls, 50 per connection at most: 5 connections.
        Self.run([Reading(demand: 240, active: 2, second: 0, decision: .grow(to: 5))])
    }

    @Test("Just above the band it grows by at least one")
    func growsByOne() {
        Self.run([Reading(demand: 102, active: 2, second: 0, decision: .grow(to: 3))])
    }

    @Test("Growth stops at the maximum")
    func capped() {
        Self.run([
            Reading(demand: 10_000, active: 2, second: 0, decision: .grow(to: 8)),
            Reading(demand: 10_000, active: 8, second: 10, decision: .stay),
        ])
    }

    @Test("After a growth it waits out the cooldown, then grows again")
    func cooldown() {
        Self.run([
            Reading(demand: 240, active: 2, second: 0, decision: .grow(to: 5)),
            Reading(demand: 400, active: 5, second: 1, decision: .stay),
            Reading(demand: 400, active: 5, second: 4, decision: .stay),
            Reading(demand: 400, active: 5, second: 5, decision: .grow(to: 8)),
        ])
    }

    @Test("Below the band it shrinks by one after the configured readings in a row")
    func shrinksAfterReadings() {
        Self.run([
            Reading(demand: 4, active: 4, second: 0, decision: .stay),
            Reading(demand: 4, active: 4, second: 1, decision: .stay),
            Reading(demand: 4, active: 4, second: 2, decision: .shrink(to: 3)),
            Reading(demand: 4, active: 3, second: 3, decision: .stay),
            Reading(demand: 4, active: 3, second: 4, decision: .stay),
            Reading(demand: 4, active: 3, second: 5, decision: .shrink(to: 2)),
        ])
    }

    @Test("A reading back in the band starts the low count over")
    func lowCountResets() {
        Self.run([
            Reading(demand: 4, active: 4, second: 0, decision: .stay),
            Reading(demand: 4, active: 4, second: 1, decision: .stay),
            Reading(demand: 80, active: 4, second: 2, decision: .stay),
            Reading(demand: 4, active: 4, second: 3, decision: .stay),
            Reading(demand: 4, active: 4, second: 4, decision: .stay),
            Reading(demand: 4, active: 4, second: 5, decision: .shrink(to: 3)),
        ])
    }

    @Test("A growth starts the low count over too")
    func growthResetsLowCount() {
        Self.run([
            Reading(demand: 4, active: 4, second: 0, decision: .stay),
            Reading(demand: 4, active: 4, second: 1, decision: .stay),
            Reading(demand: 300, active: 4, second: 2, decision: .grow(to: 6)),
            Reading(demand: 6, active: 6, second: 3, decision: .stay),
            Reading(demand: 6, active: 6, second: 4, decision: .stay),
            Reading(demand: 6, active: 6, second: 5, decision: .shrink(to: 5)),
        ])
    }

    @Test("It never shrinks below the minimum")
    func floor() {
        Self.run([
            Reading(demand: 0, active: 2, second: 0, decision: .stay),
            Reading(demand: 0, active: 2, second: 1, decision: .stay),
            Reading(demand: 0, active: 2, second: 2, decision: .stay),
            Reading(demand: 0, active: 2, second: 3, decision: .stay),
        ])
    }

    @Test("The load test's step: 16 → 512 calls at once grows to the maximum, and back down to the minimum")
    func loadStep() {
        var readings = [
            Reading(demand: 16, active: 2, second: 0, decision: .stay),
            Reading(demand: 512, active: 2, second: 1, decision: .grow(to: 8)),
            Reading(demand: 512, active: 8, second: 2, decision: .stay),
        ]
        // Back to 4 calls: one connection leaves every three readings.
        var active = 8
        var second = 3
        while active > 2 {
            readings.append(Reading(demand: 4, active: active, second: second, decision: .stay))
            readings.append(Reading(demand: 4, active: active, second: second + 1, decision: .stay))
            readings.append(Reading(demand: 4, active: active, second: second + 2, decision: .shrink(to: active - 1)))
            active -= 1
            second += 3
        }
        readings.append(Reading(demand: 4, active: 2, second: second, decision: .stay))
        Self.run(readings)
    }
}
