internal import GRPCPoolCoreBridge

extension PooledConnection.StateMachine {
    enum Action: Sendable, Equatable {
        /// Tell the observers.
        case emit(PoolEvent.Kind)
        /// Tell the observers the connection moved away from `from` (to where it goes now).
        case emitMoved(from: String)
        /// Remember as the connection's latest failure.
        case recordError(String)
        /// A log line, formatted in one place (``PooledConnection/LogEvent``).
        case log(PooledConnection.LogEvent)
        /// Ask the current channel to connect (it is idle).
        case requestConnect
        /// Check the current channel; the answer comes back to ``checked(_:current:)``.
        case check
        /// Send the keepalive RPC; the answer comes back to ``keepaliveAnswered(_:)``.
        case keepalive
        /// Fire the retry timer of `episode` for `attempt` after `after`.
        case scheduleRetry(episode: Int, attempt: Int, after: Duration)
        /// Fire the restore timer of ejection number `ejection` after `after`.
        case scheduleRestore(ejection: Int, after: Duration)
        /// Connect a replacement channel and check it; the outcome comes back to
        /// ``replacementFinished(id:connected:)``.
        case connectReplacement(id: Int)
        /// Close replacement `id`'s channel: its attempt no longer counts.
        case cancelReplacement(id: Int)
        /// Put the replacement that just connected in place of the current channel (whose calls
        /// finish before it closes), and say why.
        case swapIn(reason: String)
        /// Put a new, unconnected channel in place of the current one.
        case swapInUnconnected
        /// Close the replacement that just finished: it no longer counts.
        case discardReplacement
        /// Open a new channel if the current one was closed, and ask it to connect.
        case reopen
        /// Put a new, unconnected channel to where the connection goes now in place of the
        /// current one (it has no calls: it is outside the working set).
        case retarget
        /// Wait until no call or lease is left, then report ``drained(current:)``.
        case waitUntilDrained
        /// Close the current channel (the connection stays, to be activated again).
        case closeChannel
    }

    // MARK: - The pool's commands

    /// The pool's machine ejected the connection after `failures` failed calls in a row: out of
    /// rotation now, a replacement channel, a look again after `ejectionTime`.
    mutating func ejected(failures: Int, ejectionTime: Duration) -> [Action] {
        guard self.ejection == nil, !self.isClosed else { return [] }
        self.ejections += 1
        self.ejection = Ejection(number: self.ejections)
        self.setInRotation(false)
        return [
            .scheduleRestore(ejection: self.ejections, after: ejectionTime),
            .recordError("ejected after \(failures) failed calls in a row"),
            .emit(.ejected(failures: failures, ejectionTime: ejectionTime)),
        ] + self.replace(for: .ejected)
    }

    /// The restore timer of ejection number `number` fired: the ejection ends, and a check
    /// decides whether the connection is back.
    mutating func restoreTimerFired(ejection number: Int) -> [Action] {
        guard self.ejection?.number == number else { return [] }
        self.ejection = nil
        self.restoring = true
        return self.check()
    }

    /// Into the pool's working set: connect, check, and put in rotation.
    mutating func activated() -> [Action] {
        guard !self.active, !self.isClosed else { return [] }
        self.active = true
        return [.log(.activated), .emit(.connecting), .reopen] + self.check()
    }

    /// Out of the working set: out of rotation now, a replacement under way cancelled; the
    /// channel closes once the calls on it have finished (or at the time limit).
    mutating func deactivated() -> [Action] {
        guard self.active else { return [] }
        self.active = false
        self.recovering = false
        self.setInRotation(false)
        return self.cancelAttempt() + [.waitUntilDrained]
    }

    /// The drain that ``deactivated()`` started is over; `current` when the channel is still
    /// the one it drained.
    func drained(current: Bool) -> [Action] {
        guard !self.active, current, !self.isClosed else { return [] }
        return [.closeChannel, .emit(.drained)]
    }

    /// The pool placed the connection on another address, away from `from`. Outside the working
    /// set a new channel waits there unconnected; in it, a replacement connects there and is
    /// checked before it takes the current one's place (make before break).
    mutating func moveRequested(from: String) -> [Action] {
        guard !self.isClosed else { return [] }
        guard self.active else { return [.retarget, .emitMoved(from: from)] }
        return self.replace(for: .move(from: from))
    }

    /// `maxConnectionAge` passed: a replacement (make before break), unless the connection is
    /// out of rotation or already connecting one.
    mutating func maxAgeReached() -> [Action] {
        guard self.inRotation, self.attempt == nil else { return [] }
        return self.replace(for: .maxConnectionAge)
    }

    /// The keepalive timer fired: one keepalive RPC at a time, on an active connection.
    mutating func keepaliveTimerFired() -> [Action] {
        guard self.active, !self.keepaliveInFlight, !self.isClosed else { return [] }
        self.keepaliveInFlight = true
        return [.keepalive]
    }

    /// The keepalive RPC got an answer, or none in time (then a check).
    mutating func keepaliveAnswered(_ answered: Bool) -> [Action] {
        self.keepaliveInFlight = false
        return answered || self.isClosed ? [] : self.check()
    }

    /// The pool closes the connection for good.
    mutating func closed() -> [Action] {
        let actions: [Action] = self.attempt.map { [.cancelReplacement(id: $0.id)] } ?? []
        self.attempt = nil
        self.isClosed = true
        self.setInRotation(false)
        return actions
    }
}

extension PooledConnection {
    /// A log line of a connection's monitor: typed, so that tests assert facts and the text is
    /// written in one place (``message``).
    enum LogEvent: Sendable, Equatable {
        case recovered
        case checkFailed(reason: String)
        case reconnecting(attempt: Int, of: Int, step: ReconnectionStep)
        case attemptsExhausted(retryEvery: Duration)
        case retryScheduled(attempt: Int, delay: Duration)
        case activated

        enum ReconnectionStep: Sendable, Equatable {
            /// The core is reconnecting the channel (it is in `state`).
            case coreReconnecting(ChannelConnectivity)
            case askingIdleChannel
            case newChannel
        }

        var message: String {
            switch self {
            case .recovered:
                return "connection recovered"
            case .checkFailed:
                return "health check failed"
            case .reconnecting(let attempt, let of, let step):
                let phase = attempt <= of ? "\(attempt) of \(of)" : "\(attempt) (at the capped interval)"
                switch step {
                case .coreReconnecting(let state):
                    return "reconnection attempt \(phase): the channel is reconnecting (\(state))"
                case .askingIdleChannel:
                    return "reconnection attempt \(phase): asking the idle channel to connect"
                case .newChannel:
                    return "reconnection attempt \(phase): connecting a new channel"
                }
            case .attemptsExhausted(let interval):
                return "reconnection attempts exhausted; retrying every \(interval) until it recovers"
            case .retryScheduled(let attempt, _):
                return "reconnection attempt \(attempt) scheduled"
            case .activated:
                return "connection activated"
            }
        }

        var metadata: [String: String] {
            switch self {
            case .checkFailed(let reason): ["grpc.pool.reason": reason]
            case .retryScheduled(_, let delay): ["grpc.pool.delay_ms": "\(Int(delay.milliseconds))"]
            default: [:]
            }
        }
    }
}
