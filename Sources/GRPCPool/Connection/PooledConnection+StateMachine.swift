internal import GRPCPoolCoreBridge

extension PooledConnection {
    /// A connection's state and the decisions about it, as a value: no I/O, no clock, no logging.
    /// It lives under the connection's lock (``PooledConnection/step(_:)``); the pool (eject,
    /// activate, deactivate, move, a call that ended with UNAVAILABLE) and the monitor (timers,
    /// connectivity, the results of its checks and replacement attempts) call it synchronously.
    /// Each event returns the actions to carry out; I/O actions run as the monitor's child tasks,
    /// whose results come back as events.
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
    /// At most one replacement connects at a time; a newer reason (an ejection, a move, leaving
    /// the working set) cancels the one under way. Whether the connection may be picked is
    /// decided here only (``inRotation``).
    struct StateMachine: Sendable {
        /// An ejection under way: its number (each has its own restore timer).
        struct Ejection: Sendable, Equatable {
            var number: Int
        }

        /// A replacement channel connecting, and what it is for.
        struct Attempt: Sendable, Equatable {
            var id: Int
            var purpose: Purpose
        }

        enum Purpose: Sendable, Equatable {
            /// Recovery attempt `n` of the current episode.
            case recovery(attempt: Int)
            case ejected
            case maxConnectionAge
            /// The pool placed the connection on another address, away from `from`.
            case move(from: String)
        }

        // The fields below change only through the machine's events (here and in
        // +Commands); the connection reads them under its lock.
        let backoff: Backoff
        /// In the pool's working set; an inactive connection has no TCP connection.
        var active: Bool
        /// Connected, passed its last check, active and not ejected: the pool may pick it.
        var inRotation = false
        var ejection: Ejection?
        var ejections = 0
        /// The recovery episode under way, or the last one; each has its own retry timers.
        var episode = 0
        var recovering = false
        /// Whether the channel was ready when its state last changed: leaving ready is a
        /// disconnection, failing before it a failed attempt.
        var wasReady = false
        var attempt: Attempt?
        var attempts = 0
        /// A check in flight (at most one); another asked for meanwhile runs after it.
        var checking = false
        var checkAgain = false
        /// The retry attempt whose check is in flight: a failed answer replaces the channel.
        var retryCheck: Int?
        /// An ejection ended: a healthy answer to the next check restores the connection.
        var restoring = false
        var keepaliveInFlight = false
        var isClosed = false

        init(active: Bool, backoff: Backoff) {
            self.active = active
            self.backoff = backoff
        }

        /// Puts the connection in or out of rotation: never in while inactive, ejected or closed.
        mutating func setInRotation(_ value: Bool) {
            self.inRotation = value && self.active && self.ejection == nil && !self.isClosed
        }

        // MARK: - Connectivity and checks

        /// The current channel's connectivity changed to `state`.
        mutating func connectivityChanged(to state: ChannelConnectivity) -> [Action] {
            var actions: [Action] = []
            if state != .ready, self.wasReady {
                actions.append(.emit(.disconnected(reason: "\(state)")))
            } else if state == .transientFailure {
                actions.append(.emit(.failed(reason: "connection attempt failed")))
            }
            self.wasReady = state == .ready
            switch state {
            case .ready:
                return actions + [.emit(.connected)] + self.check()
            case .idle:
                // Lost, or idle-timed-out: out of rotation until it is ready again; pooled
                // connections stay warm, so an active one reconnects at once.
                self.setInRotation(false)
                return actions + (self.active ? [.requestConnect] : [])
            case .connecting:
                return actions
            case .transientFailure, .shutdown:
                return actions + self.judge(.unhealthy(reason: "connection lost (\(state))", replace: true))
            }
        }

        /// A check now: the periodic one, one a call asked for, or a keepalive RPC that got no
        /// answer. One runs at a time; one asked for meanwhile runs after it.
        mutating func check() -> [Action] {
            // Outside the working set there is nothing to put in rotation or repair.
            guard self.active, !self.isClosed else { return [] }
            guard !self.checking else {
                self.checkAgain = true
                return []
            }
            self.checking = true
            return [.check]
        }

        /// A call on the connection ended with UNAVAILABLE: a channel that is no longer ready
        /// leaves rotation now, not once its connectivity watch has been heard; a check follows.
        mutating func callUnavailable(channelReady: Bool) -> [Action] {
            if !channelReady { self.setInRotation(false) }
            return self.check()
        }

        /// The check found `probe`; `current` when it checked the channel in place now.
        mutating func checked(_ probe: HealthProbe, current: Bool) -> [Action] {
            self.checking = false
            let again = self.checkAgain || !current
            self.checkAgain = false
            var actions: [Action] = []
            if current {
                let (retry, restoring) = (self.retryCheck, self.restoring)
                (self.retryCheck, self.restoring) = (nil, false)
                if let retry, probe != .healthy, self.recovering, self.active {
                    actions = self.replace(for: .recovery(attempt: retry))
                } else {
                    actions = (restoring && probe == .healthy ? [.emit(.restored)] : []) + self.judge(probe)
                }
            }
            return again ? actions + self.check() : actions
        }

        /// What a check's answer means for the rotation and for recovery.
        private mutating func judge(_ probe: HealthProbe) -> [Action] {
            switch probe {
            case .pending:
                // Connecting: out of rotation until it is ready, but no recovery episode yet.
                self.setInRotation(false)
                return []
            case .healthy:
                let recovered = self.recovering && self.ejection == nil
                self.recovering = false
                self.setInRotation(true)
                return recovered ? [.log(.recovered)] : []
            case .unhealthy where !self.active:
                // Outside the working set: nothing to repair until it is activated.
                self.setInRotation(false)
                return []
            case .unhealthy(let reason, _):
                let wasInRotation = self.inRotation
                self.setInRotation(false)
                var actions: [Action] = [.recordError(reason)]
                if wasInRotation || !self.recovering { actions.append(.log(.checkFailed(reason: reason))) }
                if !self.recovering {
                    self.recovering = true
                    self.episode += 1
                    actions += self.scheduleRetry(attempt: 1)
                }
                return actions
            }
        }

        // MARK: - Recovery

        /// The retry timer of `episode` fired for `attempt`; `state` is the channel's now.
        mutating func retryTimerFired(episode: Int, attempt: Int, state: ChannelConnectivity) -> [Action] {
            guard self.recovering, episode == self.episode, !self.isClosed else { return [] }
            // A replacement connecting for another reason answers for this attempt too.
            guard self.attempt == nil else { return self.next(after: attempt) }
            let of = self.backoff.fastAttempts
            switch state {
            case .ready:
                // Recovered by itself (the core reconnects a channel on its own), or connected
                // but failing its checks: a check decides.
                self.retryCheck = attempt
                return self.check()
            case .connecting, .transientFailure:
                // The core is reconnecting it, backing off from retryDelay to maxRetryDelay; a
                // second channel would only add connection attempts.
                let log = Action.log(.reconnecting(attempt: attempt, of: of, step: .coreReconnecting(state)))
                return [log] + self.next(after: attempt)
            case .idle:
                let log = Action.log(.reconnecting(attempt: attempt, of: of, step: .askingIdleChannel))
                return [log, .requestConnect] + self.next(after: attempt)
            case .shutdown:
                return self.replace(for: .recovery(attempt: attempt))
            }
        }

        mutating func scheduleRetry(attempt: Int) -> [Action] {
            let delay = self.backoff.delay(attempt: attempt)
            return [
                .scheduleRetry(episode: self.episode, attempt: attempt, after: delay),
                .log(.retryScheduled(attempt: attempt, delay: delay)),
            ]
        }

        /// The next attempt of the current episode, with a note when the fast ones are used up.
        mutating func next(after attempt: Int) -> [Action] {
            let exhausted: [Action] =
                attempt == self.backoff.fastAttempts
                ? [.log(.attemptsExhausted(retryEvery: self.backoff.maximum))] : []
            return exhausted + self.scheduleRetry(attempt: attempt + 1)
        }

        // MARK: - Replacement channels

        /// Starts connecting a replacement for `purpose`, cancelling the one under way.
        mutating func replace(for purpose: Purpose) -> [Action] {
            var actions = self.cancelAttempt()
            if case .recovery(let n) = purpose {
                let of = self.backoff.fastAttempts
                actions.append(.log(.reconnecting(attempt: n, of: of, step: .newChannel)))
            }
            self.attempts += 1
            self.attempt = Attempt(id: self.attempts, purpose: purpose)
            return actions + [.connectReplacement(id: self.attempts)]
        }

        /// Cancels the replacement under way; a recovery attempt cancelled counts as failed.
        mutating func cancelAttempt() -> [Action] {
            guard let attempt = self.attempt else { return [] }
            self.attempt = nil
            guard case .recovery(let n) = attempt.purpose, self.recovering, self.active else {
                return [.cancelReplacement(id: attempt.id)]
            }
            return [.cancelReplacement(id: attempt.id)] + self.next(after: n)
        }

        /// Replacement `id` connected and passed a check (`connected`), or did not.
        mutating func replacementFinished(id: Int, connected: Bool) -> [Action] {
            guard let attempt = self.attempt, attempt.id == id, !self.isClosed else { return [.discardReplacement] }
            self.attempt = nil
            switch attempt.purpose {
            case .recovery(let n):
                guard connected else { return self.next(after: n) }
                self.wasReady = true
                return [.swapIn(reason: "unresponsive (reconnection attempt \(n))")] + self.judge(.healthy)
            case .ejected, .maxConnectionAge:
                guard connected else { return [] }
                self.wasReady = true
                return [.swapIn(reason: attempt.purpose == .ejected ? "ejected" : "maxConnectionAge")]
            case .move(let from):
                guard connected else {
                    // A channel still trying to connect takes its place: out of rotation until
                    // it is ready, the usual recovery after that.
                    self.wasReady = false
                    self.setInRotation(false)
                    return [.swapInUnconnected, .emitMoved(from: from), .requestConnect]
                }
                self.wasReady = true
                return [.swapIn(reason: "moved from \(from)"), .emitMoved(from: from)] + self.judge(.healthy)
            }
        }
    }
}
