import Testing

@testable import GRPCPool

/// The machine behind a reference, so that its mutating calls can sit inside `#expect`.
final class PoolMachineBox {
    typealias Machine = ConnectionPool.StateMachine
    var machine: Machine
    let now = ContinuousClock.now

    init(_ machine: Machine) { self.machine = machine }

    func pick(waiter: UInt64?, start: Int, now: ContinuousClock.Instant) -> Machine.OnPick {
        self.machine.pick(waiter: waiter, start: start, now: now)
    }
    func release(_ index: Int, outcome: Machine.Outcome?, start: Int, now: ContinuousClock.Instant) -> Machine.OnRelease
    {
        self.machine.release(index, outcome: outcome, start: start, now: now)
    }
    func published(
        _ index: Int,
        _ availability: Machine.Availability,
        start: Int,
        now: ContinuousClock.Instant
    ) -> [Machine.Handoff] {
        self.machine.published(index, availability, start: start, now: now)
    }
    func leave(waiter: UInt64) -> Bool { self.machine.leave(waiter: waiter) }
    func occupy(_ index: Int) { self.machine.occupy(index) }
    func beginShutdown() -> [UInt64] { self.machine.beginShutdown() }
    var connections: [Machine.Connection] { self.machine.connections }
    var waiting: Int { self.machine.waiting }
    var queued: Int { self.machine.queued }
    var totalLoad: Int { self.machine.totalLoad }
    var lifecycle: Machine.Lifecycle { self.machine.lifecycle }
}

/// The pool's machine, table-style: picks, the FIFO of waiting calls, hand-offs, shedding,
/// shutdown and ejection, with no I/O and no clock.
@Suite("The pool's machine: who gets a connection, who waits, in what order")
struct PoolStateMachineTests {
    typealias Machine = ConnectionPool.StateMachine
    static let now = ContinuousClock.now

    /// A machine over `count` connections of capacity `streamCapacity - 1`, each published
    /// pickable as `pickable` says.
    static func machine(
        _ count: Int,
        pickable: [Bool]? = nil,
        configure: (inout PoolManager.ServiceConfig) -> Void = { _ in }
    ) -> PoolMachineBox {
        var config = PoolManager.ServiceConfig(host: "h", port: 1, poolSize: count)
        config.streamCapacity = 3  // two calls per connection
        configure(&config)
        var machine = Machine(config: config, active: Array(repeating: true, count: count), now: Self.now)
        for (index, up) in (pickable ?? Array(repeating: true, count: count)).enumerated() {
            _ = machine.published(
                index,
                .init(pickable: up, active: true, ejected: false, version: 1),
                start: 0,
                now: Self.now
            )
        }
        return PoolMachineBox(machine)
    }

    @Test("Round robin over pickable connections with room; the load counts each call")
    func picks() {
        let machine = Self.machine(3, pickable: [true, false, true])
        #expect(machine.pick(waiter: nil, start: 0, now: Self.now) == .run(0))
        #expect(machine.pick(waiter: nil, start: 1, now: Self.now) == .run(2))
        #expect(machine.pick(waiter: nil, start: 2, now: Self.now) == .run(2))
        #expect(machine.connections.map(\.load) == [1, 0, 2])
        #expect(machine.totalLoad == 3)
    }

    @Test("Waiters are served in arrival order as rooms free, each once")
    func fifo() {
        let machine = Self.machine(1)
        #expect(machine.pick(waiter: 100, start: 0, now: Self.now) == .run(0))
        #expect(machine.pick(waiter: 101, start: 0, now: Self.now) == .run(0))
        // Full: without an id the call is told it would wait; with one it is queued.
        #expect(machine.pick(waiter: nil, start: 0, now: Self.now) == .wait)
        for id: UInt64 in 1...5 { #expect(machine.pick(waiter: id, start: 0, now: Self.now) == .wait) }
        #expect(machine.waiting == 5)
        #expect(machine.queued == 5)
        var served: [UInt64] = []
        for _ in 0..<5 {
            let released = machine.release(0, outcome: nil, start: 0, now: Self.now)
            #expect(released.handoffs.count == 1)
            served += released.handoffs.map(\.waiter)
        }
        #expect(served == [1, 2, 3, 4, 5])
        #expect(machine.waiting == 0)
        #expect(machine.connections[0].load == 2, "each hand-off took the room it was given")
    }

    @Test("A connection that becomes pickable takes the oldest waiters up to its room")
    func handOffOnPublication() {
        let machine = Self.machine(2, pickable: [false, false])
        for id: UInt64 in 1...3 { #expect(machine.pick(waiter: id, start: 0, now: Self.now) == .wait) }
        #expect(machine.queued == 0, "waiting for a healthy connection is not the full queue")
        let handoffs = machine.published(
            1,
            .init(pickable: true, active: true, ejected: false, version: 2),
            start: 0,
            now: Self.now
        )
        #expect(handoffs == [.init(waiter: 1, connection: 1), .init(waiter: 2, connection: 1)])
        #expect(machine.waiting == 1)
        // A late publication (an older version) changes nothing.
        #expect(
            machine.published(
                1,
                .init(pickable: false, active: true, ejected: false, version: 1),
                start: 0,
                now: Self.now
            ) == []
        )
        #expect(machine.connections[1].isHealthy)
    }

    @Test("A full queue sheds at once; a waiter that leaves frees its place")
    func shedding() {
        let machine = Self.machine(1) { $0.maxQueuedCalls = 2 }
        _ = machine.pick(waiter: nil, start: 0, now: Self.now)
        _ = machine.pick(waiter: nil, start: 0, now: Self.now)
        #expect(machine.pick(waiter: 1, start: 0, now: Self.now) == .wait)
        #expect(machine.pick(waiter: 2, start: 0, now: Self.now) == .wait)
        #expect(machine.pick(waiter: 3, start: 0, now: Self.now) == .refuse(.saturated))
        #expect(machine.pick(waiter: nil, start: 0, now: Self.now) == .refuse(.saturated))
        #expect(machine.leave(waiter: 1))
        #expect(!machine.leave(waiter: 1), "gone already")
        #expect(machine.pick(waiter: 4, start: 0, now: Self.now) == .wait)
        let served = machine.release(0, outcome: nil, start: 0, now: Self.now).handoffs.map(\.waiter)
        #expect(served == [2])
    }

    @Test("With none pickable: fail fast refuses, useAnyConnection runs on an active one, the default waits")
    func noneHealthy() {
        let failFast = Self.machine(2, pickable: [false, false]) { $0.whenNoneHealthy = .failFast }
        #expect(failFast.pick(waiter: 1, start: 0, now: Self.now) == .refuse(.noneHealthy))
        let any = Self.machine(2, pickable: [false, false]) { $0.whenNoneHealthy = .useAnyConnection }
        #expect(any.pick(waiter: 1, start: 3, now: Self.now) == .run(1))
        let wait = Self.machine(2, pickable: [false, false])
        #expect(wait.pick(waiter: 1, start: 0, now: Self.now) == .wait)
    }

    @Test("Shutdown refuses new calls and every waiter")
    func shutdown() {
        let machine = Self.machine(1)
        _ = machine.pick(waiter: nil, start: 0, now: Self.now)
        _ = machine.pick(waiter: nil, start: 0, now: Self.now)
        for id: UInt64 in 1...3 { _ = machine.pick(waiter: id, start: 0, now: Self.now) }
        #expect(machine.beginShutdown() == [1, 2, 3])
        #expect(machine.waiting == 0)
        #expect(machine.pick(waiter: 4, start: 0, now: Self.now) == .refuse(.shutDown))
        #expect(machine.beginShutdown() == [])
        #expect(machine.release(0, outcome: nil, start: 0, now: Self.now).handoffs == [])
        #expect(machine.lifecycle == .draining)
    }

    @Test("Five connection failures in a row eject, while another succeeds, within the share")
    func ejection() {
        let failure = Machine.Outcome(latency: .milliseconds(5), connectionFailure: true)
        let success = Machine.Outcome(latency: .milliseconds(5), connectionFailure: false)
        let machine = Self.machine(4)
        var ejections: [Int] = []
        for _ in 0..<5 {
            _ = machine.pick(waiter: nil, start: 0, now: Self.now)
            if let eject = machine.release(0, outcome: failure, start: 0, now: Self.now).eject {
                ejections.append(eject.connection)
                #expect(eject.failures == 5)
            }
        }
        #expect(ejections == [0])
        // Asked, not yet confirmed: a second connection's streak may eject it too (half of 4),
        // but not a third (the share).
        for index in [1, 2] {
            for _ in 0..<5 {
                machine.occupy(index)
                if let eject = machine.release(index, outcome: failure, start: 0, now: Self.now).eject {
                    ejections.append(eject.connection)
                }
            }
        }
        #expect(ejections == [0, 1])
        // The ejection ends: the streak starts over.
        _ = machine.published(
            0,
            .init(pickable: false, active: true, ejected: true, version: 2),
            start: 0,
            now: Self.now
        )
        _ = machine.published(
            0,
            .init(pickable: true, active: true, ejected: false, version: 3),
            start: 0,
            now: Self.now
        )
        #expect(machine.connections[0].failureStreak == 0)
        machine.occupy(3)
        _ = machine.release(3, outcome: success, start: 0, now: Self.now)
        #expect(machine.connections[3].failureStreak == 0)
    }

    @Test("No ejection when no other connection succeeds, nor of the last one in rotation")
    func noEjection() {
        let failure = Machine.Outcome(latency: .milliseconds(5), connectionFailure: true)
        let machine = Self.machine(2)
        // Connection 0 is failing too: when 1's streak reaches five, nobody succeeds.
        for index in [0, 0, 0, 0, 1, 1, 1, 1, 1, 0] {
            machine.occupy(index)
            #expect(machine.release(index, outcome: failure, start: 0, now: Self.now).eject == nil)
        }
        let alone = Self.machine(1)
        for _ in 0..<10 {
            alone.occupy(0)
            #expect(alone.release(0, outcome: failure, start: 0, now: Self.now).eject == nil)
        }
    }
}
