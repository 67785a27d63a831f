import DemoServices
import GRPCCore
import GRPCPoolCoreBridge
import Synchronization
import Testing

@testable import GRPCPool

/// The package's concurrency idioms, each written once: the waiter queue behind a lock, the
/// one-shot value, the time limit on the pool's clock, and the pool's queue of waiting calls.
@Suite("Concurrency idioms: waiters, one-shots, time limits, the pool's queue")
struct ConcurrencyIdiomTests {
    struct Box: Sendable {
        var value: Int?
        var waiters = WaiterQueue<Int>()
    }

    @Test("A waiter registers under the lock and is resumed, once, by whoever sets the value")
    func waiterResumed() async throws {
        let state = Locked(Box())
        let waiter = Task { await state.wait(in: \.waiters, until: { $0.value }, cancelled: -1) }
        #expect(await poll { state.withLock { $0.waiters.count } == 1 })
        let resumed = state.withLock { box in
            box.value = 7
            return box.waiters.removeAll()
        }
        resumed.resume(returning: 7)
        #expect(await waiter.value == 7)
        // Ready at once: no registration.
        #expect(await state.wait(in: \.waiters, until: { $0.value }, cancelled: -1) == 7)
        #expect(state.withLock { $0.waiters.isEmpty })
    }

    @Test("A cancelled waiter leaves the queue and gets the cancellation answer")
    func waiterCancelled() async throws {
        let state = Locked(Box())
        let left = Atomic(0)
        let waiter = Task {
            await state.wait(
                in: \.waiters,
                until: { _, _ in nil },
                leave: { _, _ in left.add(1, ordering: .relaxed) },
                cancelled: -1
            )
        }
        #expect(await poll { state.withLock { $0.waiters.count } == 1 })
        waiter.cancel()
        #expect(await waiter.value == -1)
        #expect(state.withLock { $0.waiters.isEmpty })
        #expect(left.load(ordering: .relaxed) == 1)
    }

    @Test("A one-shot is set once; every waiter gets its value; a cancelled one its own answer")
    func oneShot() async throws {
        let shot = OneShot<Int>()
        let waiters = (0..<3).map { _ in Task { await shot.wait(cancelled: -1) } }
        let cancelled = Task { await shot.wait(cancelled: -1) }
        cancelled.cancel()
        #expect(await cancelled.value == -1)
        #expect(shot.set(5))
        #expect(!shot.set(6))
        for waiter in waiters { #expect(await waiter.value == 5) }
        #expect(shot.value == 5)
    }

    @Test("A time limit on the manual clock cancels the operation when the clock reaches it, not before")
    func timeLimit() async throws {
        let clock = ManualClock()
        let never = Task {
            await clock.withTimeLimit(.seconds(5)) {
                await OneShot<Int>().wait(cancelled: -1)
            }
        }
        #expect(await clock.advanceToSleep(in: .seconds(5)))
        #expect(await never.value == -1)
        let quick = await clock.withTimeLimit(.seconds(5)) { 42 }
        #expect(quick == 42, "an operation that ends first needs no clock")
    }

    @Test("A call waiting for a connection gives up when its time limit passes on the pool's clock")
    func waiterDeadline() async throws {
        let clock = ManualClock()
        var config = PoolManager.ServiceConfig(host: "h", port: 1, poolSize: 1)
        config.streamCapacity = 2
        let dispatcher = CallDispatcher(config: config, active: [true], clock: clock)
        dispatcher.published(0, .init(pickable: true, active: true, ejected: false, version: 1))
        #expect(await dispatcher.pick(timeLimit: .seconds(5)) == .run(0))
        let waiter = Task { await dispatcher.pick(timeLimit: .seconds(5)) }
        #expect(await poll { dispatcher.waiting.all == 1 })
        #expect(await clock.advanceToSleep(in: .seconds(5)))
        #expect(await waiter.value == .cancelled)
        #expect(dispatcher.waiting.all == 0)
        // The room it waited for goes to nobody now.
        dispatcher.leaseEnded(on: 0)
        #expect(dispatcher.totalLoad == 0)
    }

    @Test("1000 callers queued on a full pool are served in the order they came, each once")
    func thousandInOrder() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 1) { $0.streamCapacity = 2 }
            try await withPoolManager(["svc": config]) { manager in
                let pool = try manager.pool(for: "svc")
                let served = Locked<[Int]>([])
                let holder = OneShot<Void>()
                let held = Task {
                    try await pool.withConnection(timeout: .seconds(30)) { _ in _ = await holder.wait(cancelled: ()) }
                }
                #expect(await poll { pool.connections[0].load == 1 })
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for caller in 0..<1000 {
                        group.addTask {
                            try await pool.withConnection(timeout: .seconds(60)) { _ in
                                served.withLock { $0.append(caller) }
                            }
                        }
                        // The next caller comes once this one waits: the arrival order is known.
                        let queued = await poll(every: .milliseconds(1)) { pool.waitingCalls == caller + 1 }
                        try #require(queued, "caller \(caller) did not queue: \(pool.waitingCalls) waiting")
                    }
                    holder.set(())
                    try await group.waitForAll()
                }
                try await held.value
                let order = served.withLock { $0 }
                #expect(
                    order == Array(0..<1000),
                    "first out of order: \(order.enumerated().first { $0.offset != $0.element } as Any)"
                )
                #expect(pool.waitingCalls == 0)
                #expect(pool.connections[0].load == 0)
            }
        }
    }
}
