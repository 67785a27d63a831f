internal import GRPCCore
internal import GRPCPoolCoreBridge
private import Synchronization

/// The pool's machine (``ConnectionPool/StateMachine``) under its lock, with what its decisions
/// need at hand: the calls' statistics per connection and the callers waiting for a connection.
/// A call picks its connection here, waits here (oldest first, each woken once, with the
/// connection it gets), and ends here. The pool and its connections share it.
final class CallDispatcher: Sendable {
    typealias Machine = ConnectionPool.StateMachine

    /// How a call's wait for a connection ended.
    enum Dispatch: Sendable, Equatable {
        /// Run on this connection: its load counts the call already.
        case run(Int)
        case refused(Machine.Refusal)
        /// The time limit passed, or the caller was cancelled.
        case cancelled
    }

    /// One connection's finished calls.
    struct CallStats: Sendable {
        var successes = 0
        var failures = 0
        var latency = LatencyHistogram()
        /// The latest failed call's error.
        var lastFailure: (error: RPCError, at: ContinuousClock.Instant)?
    }

    struct State: Sendable {
        var machine: Machine
        var stats: [CallStats]
        var waiters = WaiterQueue<Dispatch>()
        /// Calls refused before any connection saw them.
        var rejected = 0
    }

    let state: Locked<State>
    /// The rotating start of picks (round robin's next, the tie-breaks and least-busy's draws):
    /// each pick moves it on; a hand-off starts where it is.
    private let cursor = Atomic<Int>(0)
    /// Signalled at each call's end and each connection's change: what readiness and drain
    /// waits look again at.
    let changes = ChangeSignal()
    /// What the waits' time limits run on.
    let clock: any PoolClock

    init(config: PoolManager.ServiceConfig, active: [Bool], clock: any PoolClock) {
        self.clock = clock
        self.state = Locked(
            State(
                machine: Machine(config: config, active: active, now: .now),
                stats: Array(repeating: CallStats(), count: active.count)
            )
        )
    }

    // MARK: - Calls

    /// A connection for a call: at once when one has room (or a refusal), else after waiting,
    /// oldest first, for at most `timeLimit` on the pool's clock.
    func pick(timeLimit: Duration) async -> Dispatch {
        var delay: Delay?
        return await self.pick(timeLimit: timeLimit, delay: &delay)
    }

    /// A wait for a connection: why (gRFC A121's `grpc.delay_type`: `connecting` while no
    /// connection is healthy, `pool_full` while every healthy one is full), and how long.
    struct Delay: Sendable {
        var type: String
        var duration: Duration
    }

    /// The same; a call that had to wait gets `delay`.
    func pick(timeLimit: Duration, delay: inout Delay?) async -> Dispatch {
        let start = self.cursor.wrappingAdd(1, ordering: .relaxed).oldValue
        let now = ContinuousClock.now
        let (first, connecting) = self.state.withLock { state -> (Dispatch?, Bool) in
            let dispatch = Self.dispatch(state.machine.pick(waiter: nil, start: start, now: now))
            if case .refused = dispatch { state.rejected += 1 }
            guard dispatch == nil else { return (dispatch, false) }
            return (nil, !state.machine.connections.contains(where: \.isHealthy))
        }
        if let first { return first }
        let dispatch = await self.clock.withTimeLimit(timeLimit) {
            await self.state.wait(
                in: \.waiters,
                until: { state, id in Self.dispatch(state.machine.pick(waiter: id, start: start, now: now)) },
                leave: { state, id in _ = state.machine.leave(waiter: id) },
                cancelled: .cancelled
            )
        }
        if case .refused = dispatch { self.rejected() }
        delay = Delay(type: connecting ? "connecting" : "pool_full", duration: .now - now)
        return dispatch
    }

    private static func dispatch(_ pick: Machine.OnPick) -> Dispatch? {
        switch pick {
        case .run(let index): .run(index)
        case .refuse(let refusal): .refused(refusal)
        case .wait: nil
        }
    }

    /// Counts a call that did not get a connection in time.
    func rejected() {
        self.state.withLock { $0.rejected += 1 }
    }

    /// A call on connection `index`, which the caller holds.
    func occupy(_ index: Int) {
        self.state.withLock { $0.machine.occupy(index) }
    }

    /// A call on `index` ended after `latency`, with `error` or none; the waiter that gets its
    /// room is resumed. Returns the ejection outlier detection decided, if any.
    func callEnded(on index: Int, latency: Duration, error: RPCError?) -> (connection: Int, failures: Int)? {
        let now = ContinuousClock.now
        let start = self.cursor.load(ordering: .relaxed)
        let connectionFailure = error.map { Self.isConnectionFailure($0.code) } ?? false
        let (eject, handoffs) = self.state.withLock { state in
            state.stats[index].latency.record(latency)
            if let error {
                state.stats[index].failures += 1
                state.stats[index].lastFailure = (error, now)
            } else {
                state.stats[index].successes += 1
            }
            let outcome = Machine.Outcome(latency: latency, connectionFailure: connectionFailure)
            let released = state.machine.release(index, outcome: outcome, start: start, now: now)
            return (released.eject, Self.take(released.handoffs, from: &state))
        }
        Self.resume(handoffs)
        self.changes.signal()
        return eject
    }

    /// A lease on `index` ended; its room goes to the oldest waiter.
    func leaseEnded(on index: Int) {
        let start = self.cursor.load(ordering: .relaxed)
        let handoffs = self.state.withLock { state in
            Self.take(state.machine.release(index, outcome: nil, start: start, now: .now).handoffs, from: &state)
        }
        Self.resume(handoffs)
        self.changes.signal()
    }

    /// Connection `index` published whether it may be picked; waiters may get it.
    func published(_ index: Int, _ availability: Machine.Availability) {
        let start = self.cursor.load(ordering: .relaxed)
        let handoffs = self.state.withLock { state in
            Self.take(state.machine.published(index, availability, start: start, now: .now), from: &state)
        }
        Self.resume(handoffs)
        self.changes.signal()
    }

    /// No new calls from now on; the waiting ones are refused. `false` when shutdown had begun.
    func beginShutdown() -> Bool {
        let (started, refused) = self.state.withLock { state -> (Bool, Resumption<Dispatch>) in
            guard state.machine.lifecycle == .open else { return (false, .none) }
            let ids = state.machine.beginShutdown()
            return (true, ids.reduce(.none) { $0 + state.waiters.remove($1) })
        }
        refused.resume(returning: .refused(.shutDown))
        self.changes.signal()
        return started
    }

    func closed() {
        self.state.withLock { $0.machine.closed() }
        self.changes.signal()
    }

    // MARK: - Reading

    var lifecycle: Machine.Lifecycle { self.state.withLock { $0.machine.lifecycle } }

    /// Calls and leases on connection `index`.
    func load(of index: Int) -> Int { self.state.withLock { $0.machine.connections[index].load } }

    /// Calls and leases on every connection.
    var totalLoad: Int { self.state.withLock { $0.machine.totalLoad } }

    /// Calls waiting for a connection, and those of them that came when all were full.
    var waiting: (all: Int, atCapacity: Int) { self.state.withLock { ($0.machine.waiting, $0.machine.queued) } }

    // MARK: - Private

    private static func take(_ handoffs: [Machine.Handoff], from state: inout State) -> [(Resumption<Dispatch>, Int)] {
        handoffs.map { (state.waiters.remove($0.waiter), $0.connection) }
    }

    private static func resume(_ handoffs: [(Resumption<Dispatch>, Int)]) {
        for (waiter, connection) in handoffs { waiter.resume(returning: .run(connection)) }
    }

    /// Codes that say something about the connection rather than about the call.
    static func isConnectionFailure(_ code: RPCError.Code) -> Bool {
        code == .unavailable || code == .deadlineExceeded
    }
}
