internal import GRPCPoolCoreBridge

extension PooledConnection {
    /// The decisions of a connection's monitor, as a value: no I/O, no clock, no logging. Each
    /// event returns the actions to carry out; the monitor (``PooledConnection/monitor()``) feeds
    /// it events — connectivity changes, check results, timers, the pool's commands — and does
    /// the I/O.
    ///
    /// ```
    ///            lost / failed check                 core reconnects, check passes
    ///   in rotation ──────────────▶ recovering ──────────────────────────────▶ in rotation
    ///                                │  ▲
    ///                  retry timer   │  │ attempt failed: next retry at the backoff's delay
    ///                                ▼  │
    ///          connecting / transient failure: leave it to the core
    ///          idle: ask it to connect
    ///          ready but failing, or shut down: connect a replacement, swap it in
    /// ```
    ///
    /// Ejection (outlier detection) and the working set (dynamic sizing) are the pool's facts,
    /// passed in with each event as ``Facts``.
    struct StateMachine: Sendable {
        /// What the pool knows of the connection when an event is handled.
        struct Facts: Sendable, Equatable {
            var isActive: Bool
            var isHealthy: Bool
            var isEjected: Bool

            init(isActive: Bool = true, isHealthy: Bool = false, isEjected: Bool = false) {
                self.isActive = isActive
                self.isHealthy = isHealthy
                self.isEjected = isEjected
            }
        }

        enum Action: Sendable, Equatable {
            /// Put the connection in or out of rotation.
            case setHealthy(Bool)
            /// Tell the observers.
            case emit(PoolEvent.Kind)
            /// Remember as the connection's latest failure.
            case recordError(String)
            /// An info log line, with an optional reason.
            case log(String, reason: String? = nil)
            /// Ask the channel to connect (it is idle).
            case requestConnect
            /// Check the connection now and hand the result to ``probed(_:facts:)``.
            case probe
            /// Fire the retry timer of `episode` for `attempt` after the backoff's delay.
            case scheduleRetry(episode: Int, attempt: Int)
            /// Fire the restore timer of ejection number `ejection` after `after`.
            case scheduleRestore(ejection: Int, after: Duration)
            /// Connect a replacement channel and swap it in if it connects and passes a check.
            case replaceChannel(reason: String)
            /// Wait until no call or lease is left, then report ``drained(isActive:current:)``.
            case waitUntilDrained
            /// Close the current channel (the connection stays, to be activated again).
            case closeChannel
        }

        /// What a retry attempt does.
        enum RetryStep: Sendable, Equatable {
            /// Carry these out; the attempt is over.
            case actions([Action])
            /// Connect a replacement channel (after logging `log`); report the outcome with
            /// ``replacement(connected:attempt:facts:)``.
            case replace(log: String, reason: String)
        }

        let maxRetries: Int
        let maxRetryDelay: Duration
        /// The recovery episode under way, or the last one; each has its own retry timers.
        private(set) var episode = 0
        /// Whether a recovery episode is under way.
        private(set) var recovering = false
        /// Whether the channel was ready when its state last changed: leaving ready is a
        /// disconnection, failing before it a failed attempt.
        private(set) var wasReady = false
        /// The number of the latest ejection; each has its own restore timer.
        private(set) var ejection = 0

        init(maxRetries: Int, maxRetryDelay: Duration) {
            self.maxRetries = maxRetries
            self.maxRetryDelay = maxRetryDelay
        }

        // MARK: - Connectivity and checks

        /// The current channel's connectivity changed to `state`.
        mutating func connectivityChanged(to state: ChannelConnectivity, facts: Facts) -> [Action] {
            var actions: [Action] = []
            if state != .ready, self.wasReady {
                actions.append(.emit(.disconnected(reason: "\(state)")))
            } else if state == .transientFailure {
                actions.append(.emit(.failed(reason: "connection attempt failed")))
            }
            self.wasReady = state == .ready
            switch state {
            case .ready:
                actions += [.emit(.connected), .probe]
            case .idle:
                // Lost, or idle-timed-out: out of rotation until it is ready again; pooled
                // connections stay warm, so an active one reconnects at once.
                actions.append(.setHealthy(false))
                if facts.isActive { actions.append(.requestConnect) }
            case .connecting:
                break
            case .transientFailure, .shutdown:
                actions += self.probed(.unhealthy(reason: "connection lost (\(state))", replace: true), facts: facts)
            }
            return actions
        }

        /// A check found `probe`.
        mutating func probed(_ probe: HealthProbe, facts: Facts) -> [Action] {
            switch probe {
            case .pending:
                // Connecting: out of rotation until it is ready, but no recovery episode yet.
                return [.setHealthy(false)]
            case .healthy:
                // An ejected connection comes back only when its ejection time is over.
                guard !facts.isEjected else {
                    self.recovering = false
                    return []
                }
                let recovered = self.recovering
                self.recovering = false
                return (recovered ? [.log("connection recovered")] : []) + [.setHealthy(true)]
            case .unhealthy where !facts.isActive:
                // Outside the working set: nothing to repair until it is activated.
                return [.setHealthy(false)]
            case .unhealthy(let reason, _):
                var actions: [Action] = [.setHealthy(false), .recordError(reason)]
                if facts.isHealthy || !self.recovering {
                    actions.append(.log("health check failed", reason: reason))
                }
                if !self.recovering {
                    self.recovering = true
                    self.episode += 1
                    actions.append(.scheduleRetry(episode: self.episode, attempt: 1))
                }
                return actions
            }
        }

        // MARK: - Recovery

        /// Whether a retry timer of `episode` still counts: the episode is the current one and
        /// still under way.
        func isCurrent(episode: Int) -> Bool {
            self.recovering && episode == self.episode
        }

        /// A retry attempt, given the channel's `state` and whether a check just found it
        /// healthy (only looked at when it is ready).
        mutating func retry(attempt: Int, state: ChannelConnectivity, healthyNow: Bool, facts: Facts) -> RetryStep {
            if state == .ready, healthyNow {
                // Recovered by itself: the core reconnects a channel on its own.
                return .actions(self.probed(.healthy, facts: facts))
            }
            let phase =
                attempt <= self.maxRetries
                ? "\(attempt) of \(self.maxRetries)" : "\(attempt) (at the capped interval)"
            switch state {
            case .connecting, .transientFailure:
                // The core is reconnecting it, backing off from retryDelay to maxRetryDelay; a
                // second channel would only add connection attempts.
                let log = Action.log("reconnection attempt \(phase): the channel is reconnecting (\(state))")
                return .actions([log] + self.next(after: attempt))
            case .idle:
                let log = Action.log("reconnection attempt \(phase): asking the idle channel to connect")
                return .actions([log, .requestConnect] + self.next(after: attempt))
            case .ready, .shutdown:
                // Connected but failing its checks (unresponsive), or shut down under us.
                return .replace(
                    log: "reconnection attempt \(phase): connecting a new channel",
                    reason: "unresponsive (reconnection attempt \(attempt))"
                )
            }
        }

        /// The replacement a retry attempt asked for connected (and was swapped in), or not.
        mutating func replacement(connected: Bool, attempt: Int, facts: Facts) -> [Action] {
            connected ? self.probed(.healthy, facts: facts) : self.next(after: attempt)
        }

        /// The next attempt of the current episode, with a note when the fast ones are used up.
        private func next(after attempt: Int) -> [Action] {
            let exhausted: [Action] =
                attempt == self.maxRetries
                ? [.log("reconnection attempts exhausted; retrying every \(self.maxRetryDelay) until it recovers")] : []
            return exhausted + [.scheduleRetry(episode: self.episode, attempt: attempt + 1)]
        }

        // MARK: - The pool's commands

        /// The outlier detector took the connection out of rotation after `failures` failed
        /// calls in a row: replace the channel now, look again after `ejectionTime`.
        mutating func ejected(failures: Int, ejectionTime: Duration) -> [Action] {
            self.ejection += 1
            return [
                .scheduleRestore(ejection: self.ejection, after: ejectionTime),
                .recordError("ejected after \(failures) failed calls in a row"),
                .emit(.ejected(failures: failures, ejectionTime: ejectionTime)),
                .replaceChannel(reason: "ejected"),
            ]
        }

        /// Whether the restore timer of ejection number `ejection` ends the ejection now.
        func restores(ejection: Int, facts: Facts) -> Bool {
            ejection == self.ejection && facts.isEjected
        }

        /// The check after an ejection ended found `probe`.
        mutating func restored(_ probe: HealthProbe, facts: Facts) -> [Action] {
            (probe == .healthy ? [.emit(.restored)] : []) + self.probed(probe, facts: facts)
        }

        /// Into the pool's working set: connect, check, and put in rotation.
        func activated() -> [Action] {
            [.log("connection activated"), .emit(.connecting), .requestConnect, .probe]
        }

        /// Out of the working set: no new calls; the channel closes once the calls on it have
        /// finished (or at the time limit).
        mutating func deactivated() -> [Action] {
            self.recovering = false
            return [.setHealthy(false), .waitUntilDrained]
        }

        /// The drain that ``deactivated()`` started is over; `current` when the channel is still
        /// the one it drained.
        func drained(isActive: Bool, current: Bool) -> [Action] {
            guard !isActive, current else { return [] }
            return [.closeChannel, .emit(.drained)]
        }

        /// Whether `maxConnectionAge` replaces the channel now (make before break): not while it
        /// is being repaired, ejected, or out of the working set.
        func refreshes(facts: Facts) -> Bool {
            facts.isHealthy && facts.isActive && !facts.isEjected
        }

        /// The channel was swapped for a connected one: it is ready.
        mutating func swapped() {
            self.wasReady = true
        }

        /// The pool moved the connection to another address. `connected`: the new channel
        /// connected, passed its check and took the old one's place (make before break).
        /// Otherwise a channel still trying to connect took it: out of rotation until it is
        /// ready, the usual recovery after that.
        mutating func moved(connected: Bool, facts: Facts) -> [Action] {
            if connected { return self.probed(.healthy, facts: facts) }
            self.wasReady = false
            return [.setHealthy(false), .requestConnect]
        }
    }
}
