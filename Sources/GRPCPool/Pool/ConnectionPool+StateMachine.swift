internal import DequeModule

extension ConnectionPool {
    /// The pool's decisions about calls, as a value: no I/O, no clock, no lock. Which connection a
    /// call goes to, which calls wait and in what order, who gets a connection's room when a call
    /// ends or a connection becomes pickable, and when a connection's failures eject it.
    ///
    /// ```
    ///  pick ──▶ a pickable connection with room (Picker)          → run there, its load + 1
    ///    ├─ every pickable connection full ── queue at maxQueued? → refuse: saturated
    ///    │                                    └─ else             → wait, last in the queue
    ///    └─ none pickable ── failFast                             → refuse: none healthy
    ///                        useAnyConnection                     → run on an active one
    ///                        waitUntilDeadline                    → wait, last in the queue
    ///  a call ends, a connection becomes pickable                 → the oldest waiters get the
    ///                                                               rooms, in order (hand-off)
    /// ```
    ///
    /// Whether a connection is pickable is its own machine's decision, which it publishes here
    /// (``published(_:_:start:now:)``); the load (calls and leases) of each connection is this
    /// machine's, counted once.
    struct StateMachine: Sendable {
        /// What the machine knows of one connection.
        struct Connection: PickCandidate, Sendable {
            /// Its machine lets it be picked: in the working set, connected, healthy, not ejected.
            var isHealthy = false
            /// In the pool's working set (dynamic sizing); `useAnyConnection` picks among these.
            var isActive: Bool
            /// Ejected by outlier detection, as its machine last said.
            var isEjected = false
            /// An ejection this machine asked for and the connection has not confirmed yet.
            var ejectionAsked = false
            /// Calls and leases on it.
            var load = 0
            /// Calls in a row that ended with UNAVAILABLE or DEADLINE_EXCEEDED.
            var failureStreak = 0
            /// Recent latency, for least-busy balancing.
            var latency: PeakEWMA
            /// The version of the availability it last published.
            var version: UInt64 = 0

            func latencyEstimate(at now: ContinuousClock.Instant) -> Double? {
                self.latency.hasSamples ? self.latency.estimate(at: now).milliseconds : nil
            }
        }

        /// What a connection's machine publishes about it.
        struct Availability: Sendable, Equatable {
            var pickable: Bool
            var active: Bool
            var ejected: Bool
            /// Increases with every publication, so that one that arrives late is ignored.
            var version: UInt64
        }

        enum Lifecycle: Sendable, Equatable {
            case open
            case draining
            case closed
        }

        /// Why a call gets no connection.
        enum Refusal: Sendable, Equatable {
            case shutDown
            case saturated
            case noneHealthy
        }

        enum OnPick: Sendable, Equatable {
            /// Start the call on this connection (its load counts it already).
            case run(Int)
            /// The call waits, last in the queue (or would, when it may not).
            case wait
            case refuse(Refusal)
        }

        /// A waiting call given a connection: its call starts there (the load counts it already).
        struct Handoff: Sendable, Equatable {
            let waiter: UInt64
            let connection: Int
        }

        /// How a call ended, for the failure streak and the latency estimate.
        struct Outcome: Sendable, Equatable {
            var latency: Duration
            /// UNAVAILABLE or DEADLINE_EXCEEDED: about the connection rather than the call.
            var connectionFailure: Bool
        }

        struct OnRelease: Sendable, Equatable {
            var handoffs: [Handoff] = []
            /// Eject this connection, after this many failed calls in a row.
            var eject: (connection: Int, failures: Int)?

            static func == (lhs: Self, rhs: Self) -> Bool {
                lhs.handoffs == rhs.handoffs && lhs.eject?.connection == rhs.eject?.connection
                    && lhs.eject?.failures == rhs.eject?.failures
            }
        }

        private struct Waiter: Sendable {
            let id: UInt64
            /// It came when every pickable connection was full: it counts toward `maxQueued`.
            let atCapacity: Bool
        }

        let picker: Picker
        let maxQueued: Int
        let whenNoneHealthy: NoHealthyConnectionPolicy
        let outlierDetection: PoolManager.OutlierDetection?
        private(set) var connections: [Connection]
        private(set) var lifecycle = Lifecycle.open
        private var waiters: Deque<Waiter> = []
        /// Waiters that came when every pickable connection was full.
        private(set) var queued = 0

        init(config: PoolManager.ServiceConfig, active: [Bool], now: ContinuousClock.Instant) {
            self.picker = Picker(balancing: config.balancing, capacity: config.callCapacity)
            self.maxQueued = config.maxQueuedCalls
            self.whenNoneHealthy = config.whenNoneHealthy
            self.outlierDetection = config.outlierDetection
            self.connections = active.map { Connection(isActive: $0, latency: PeakEWMA(now: now)) }
        }

        /// Calls waiting for a connection now.
        var waiting: Int { self.waiters.count }

        /// Calls and leases on every connection.
        var totalLoad: Int { self.connections.reduce(0) { $0 + $1.load } }

        // MARK: - Calls

        /// A connection for a call. With `waiter`, a call that must wait is queued under that id;
        /// without, it is not (the caller tries again with one, ready to wait).
        mutating func pick(waiter: UInt64?, start: Int, now: ContinuousClock.Instant) -> OnPick {
            guard self.lifecycle == .open else { return .refuse(.shutDown) }
            switch self.picker.pick(from: self.connections, start: start, now: now) {
            case .connection(let index):
                self.connections[index].load += 1
                return .run(index)
            case .allAtCapacity:
                guard self.queued < self.maxQueued else { return .refuse(.saturated) }
                guard let waiter else { return .wait }
                self.waiters.append(Waiter(id: waiter, atCapacity: true))
                self.queued += 1
                return .wait
            case .noneHealthy:
                switch self.whenNoneHealthy.value {
                case .failFast:
                    return .refuse(.noneHealthy)
                case .useAnyConnection:
                    let active = self.connections.indices.filter { self.connections[$0].isActive }
                    guard !active.isEmpty else { return .refuse(.noneHealthy) }
                    let index = active[start % active.count]
                    self.connections[index].load += 1
                    return .run(index)
                case .waitUntilDeadline:
                    guard let waiter else { return .wait }
                    self.waiters.append(Waiter(id: waiter, atCapacity: false))
                    return .wait
                }
            }
        }

        /// A call on a connection the caller holds (a lease's, or a probe of it): counted in its
        /// load, without a pick.
        mutating func occupy(_ index: Int) {
            self.connections[index].load += 1
        }

        /// A waiting call left the queue: its time limit passed or its caller went away. `false`
        /// when it was not waiting any more (it was handed a connection just before).
        mutating func leave(waiter id: UInt64) -> Bool {
            guard let index = self.waiters.firstIndex(where: { $0.id == id }) else { return false }
            if self.waiters.remove(at: index).atCapacity { self.queued -= 1 }
            return true
        }

        /// A call or lease on `index` ended (`outcome` is `nil` for a lease): its room goes to the
        /// oldest waiter, and a failure streak may eject the connection.
        mutating func release(
            _ index: Int,
            outcome: Outcome?,
            start: Int,
            now: ContinuousClock.Instant
        ) -> OnRelease {
            self.connections[index].load -= 1
            var result = OnRelease()
            if let outcome {
                result.eject = self.record(outcome, on: index, now: now)
            }
            result.handoffs = self.dispatch(start: start, now: now)
            return result
        }

        /// The connection at `index` published its availability; a connection that became
        /// pickable takes waiters.
        mutating func published(
            _ index: Int,
            _ availability: Availability,
            start: Int,
            now: ContinuousClock.Instant
        ) -> [Handoff] {
            guard availability.version > self.connections[index].version else { return [] }
            var connection = self.connections[index]
            if connection.isEjected && !availability.ejected {
                // An ejection ended: the failure streak starts over.
                connection.failureStreak = 0
            }
            if availability.ejected || !availability.active { connection.ejectionAsked = false }
            connection.isHealthy = availability.pickable
            connection.isActive = availability.active
            connection.isEjected = availability.ejected
            connection.version = availability.version
            self.connections[index] = connection
            return self.dispatch(start: start, now: now)
        }

        /// Graceful shutdown begins: no new calls; the waiting ones are refused (their ids).
        mutating func beginShutdown() -> [UInt64] {
            guard self.lifecycle == .open else { return [] }
            self.lifecycle = .draining
            defer {
                self.waiters.removeAll()
                self.queued = 0
            }
            return self.waiters.map(\.id)
        }

        /// The pool has closed its channels.
        mutating func closed() {
            self.lifecycle = .closed
        }

        // MARK: - Private

        /// Hands rooms to the oldest waiters, in order, while the picker finds one.
        private mutating func dispatch(start: Int, now: ContinuousClock.Instant) -> [Handoff] {
            var handoffs: [Handoff] = []
            while let waiter = self.waiters.first,
                case .connection(let index) = self.picker.pick(
                    from: self.connections,
                    start: start &+ handoffs.count,
                    now: now
                )
            {
                self.waiters.removeFirst()
                if waiter.atCapacity { self.queued -= 1 }
                self.connections[index].load += 1
                handoffs.append(Handoff(waiter: waiter.id, connection: index))
            }
            return handoffs
        }

        /// Folds a call's outcome into the connection's streak and latency; the ejection it decides.
        private mutating func record(_ outcome: Outcome, on index: Int, now: ContinuousClock.Instant) -> (Int, Int)? {
            if self.picker.balancing == .leastBusy {
                // A connection failure counts as a call of at least a second, so that a connection
                // that fails fast looks slow, not idle.
                let sample = outcome.connectionFailure ? max(outcome.latency, .seconds(1)) : outcome.latency
                self.connections[index].latency.record(sample, at: now)
            }
            guard outcome.connectionFailure else {
                self.connections[index].failureStreak = 0
                return nil
            }
            self.connections[index].failureStreak += 1
            return self.ejects(index).map { (index, $0) }
        }

        /// Whether outlier detection ejects `index` now (and the failures that decided it): its
        /// streak reached the limit, another connection is succeeding, and the share allows it.
        private mutating func ejects(_ index: Int) -> Int? {
            guard let settings = self.outlierDetection else { return nil }
            let connection = self.connections[index]
            guard connection.failureStreak >= settings.consecutiveFailures, self.connections.count > 1,
                connection.isHealthy, !connection.isEjected, !connection.ejectionAsked
            else { return nil }
            let othersSucceed = self.connections.indices.contains { other in
                other != index && self.connections[other].isHealthy && !self.connections[other].isEjected
                    && self.connections[other].failureStreak == 0
            }
            let ejected = self.connections.count { $0.isEjected || $0.ejectionAsked }
            let allowed = max(1, Int((Double(self.connections.count) * settings.maxEjectedShare).rounded(.down)))
            guard othersSucceed, ejected < allowed, ejected + 1 < self.connections.count else { return nil }
            self.connections[index].ejectionAsked = true
            return connection.failureStreak
        }
    }
}
