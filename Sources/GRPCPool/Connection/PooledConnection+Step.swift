internal import CoreMetrics
package import GRPCPoolCoreBridge
internal import Logging

/// Events reach the connection's machine here, under the connection's lock.
extension PooledConnection {
    typealias Action = StateMachine.Action

    /// Runs `event` on the machine under the connection's lock, publishes the connection's
    /// availability to the pool's machine when it changed (or when `publish` insists), and carries
    /// out the actions that start no task. Returns the others — checks, timers, replacements,
    /// drains — for the monitor to run as its child tasks.
    func step(publish: Bool = false, _ event: (inout State) -> [Action]) -> [Action] {
        let (actions, availability, health, candidate) = self.storage.withLock { state in
            let actions = event(&state)
            let machine = state.machine
            var availability: CallDispatcher.Machine.Availability?
            let (pickable, active, ejected) = (machine.inRotation, machine.active, machine.ejection != nil)
            let published = state.published
            let health = published.pickable != pickable ? pickable : nil
            if publish || published.pickable != pickable || published.active != active || published.ejected != ejected {
                state.published = .init(
                    pickable: pickable,
                    active: active,
                    ejected: ejected,
                    version: published.version + 1
                )
                availability = state.published
            }
            // A cancelled replacement's channel is taken out here, and closed below.
            var cancelled: CoreChannel?
            for case .cancelReplacement(let id) in actions where state.candidate?.id == id {
                cancelled = state.candidate?.channel
                state.candidate = nil
            }
            return (actions, availability, health, cancelled)
        }
        if let health { self.instruments.healthy.record(health ? 1 : 0) }
        if let availability { self.dispatcher.published(self.index, availability) }
        candidate?.close()
        return actions.filter { !self.perform($0) }
    }

    /// `step`, for a caller other than the monitor: the tasks go to the monitor's inbox.
    func handle(publish: Bool = false, _ event: (inout State) -> [Action]) {
        let work = self.step(publish: publish, event)
        if !work.isEmpty { self.inbox.yield(.work(work)) }
    }

    /// Carries out `action` if it starts no task; whether it did.
    private func perform(_ action: Action) -> Bool {
        switch action {
        case .emit(let kind):
            if case .ejected = kind { self.standardMetrics.ejected(detectionMethod: "consecutive_failures") }
            self.emit(kind)
        case .emitMoved(let from):
            self.emit(.moved(from: from, to: self.address))
        case .recordError(let message):
            self.recordError(message)
        case .log(let line):
            self.logger.info("\(line.message)", metadata: line.metadata.mapValues { "\($0)" })
        case .requestConnect:
            _ = self.channel.state(tryToConnect: true)
        case .cancelReplacement:
            break  // its channel was closed by `step`
        case .closeChannel:
            self.closeChannel()
        case .check, .keepalive, .scheduleRetry, .scheduleRestore, .connectReplacement, .swapIn, .swapInUnconnected,
            .discardReplacement, .reopen, .retarget, .waitUntilDrained:
            return false
        }
        return true
    }

    // MARK: - The pool's commands

    /// The pool's machine ejected it after `failures` failed calls in a row: out of rotation
    /// now; the monitor replaces the channel and restores the connection after the ejection
    /// time. Published whatever the machine makes of it, so that the pool's machine hears back.
    package func eject(failures: Int) {
        let time = self.ejectionTime
        self.handle(publish: true) { $0.machine.ejected(failures: failures, ejectionTime: time) }
    }

    /// Brings it into the working set: the monitor connects it, and it is picked once healthy.
    func activate() {
        self.handle { $0.machine.activated() }
    }

    /// Takes it out of the working set: no new calls; the monitor closes its channel once the
    /// calls on it have finished.
    package func deactivate() {
        self.handle { $0.machine.deactivated() }
    }

    /// It was placed on another address, away from `from`: connect there, make before break.
    func move(from: String) {
        self.handle { $0.machine.moveRequested(from: from) }
    }

    /// A check now (a call failed, a readiness probe found it unhealthy).
    func requestCheck() {
        self.handle { $0.machine.check() }
    }

    /// How long an ejection lasts.
    var ejectionTime: Duration { self.config.outlierDetection?.ejectionTime ?? self.config.retryDelay }

    /// The replacement connecting now, if any: its attempt's id and channel.
    package var connectingReplacement: (id: Int, channel: CoreChannel)? { self.storage.withLock { $0.candidate } }
}
