import GRPCPoolCoreBridge
import Testing

@testable import GRPCPool

@Suite("A pooled connection's state machine: recovery, ejection, the working set, moves")
struct ConnectionStateMachineRecoveryTests {
    typealias Machine = PooledConnection.StateMachine
    typealias Tests = ConnectionStateMachineTests

    // MARK: - Recovery

    @Test(
        "A retry attempt leaves a reconnecting channel to the core, asks an idle one to connect, replaces a shut-down one",
        arguments: [
            (
                ChannelConnectivity.connecting,
                [Machine.Action.log(.reconnecting(attempt: 1, of: 3, step: .coreReconnecting(.connecting)))]
            ),
            (.transientFailure, [.log(.reconnecting(attempt: 1, of: 3, step: .coreReconnecting(.transientFailure)))]),
            (.idle, [.log(.reconnecting(attempt: 1, of: 3, step: .askingIdleChannel)), .requestConnect]),
        ]
    )
    func retryLeavesItToTheCore(state: ChannelConnectivity, expected: [Machine.Action]) {
        var machine = Tests.recovering()
        #expect(machine.retryTimerFired(episode: 1, attempt: 1, state: state) == expected + Tests.retry(1, 2, after: 2))
    }

    @Test("Ready at the attempt: a check decides; healthy is recovered by itself, failing is a new channel")
    func readyAtTheAttempt() {
        var machine = Tests.recovering()
        #expect(machine.retryTimerFired(episode: 1, attempt: 1, state: .ready) == [.check])
        #expect(machine.checked(.healthy, current: true) == [.log(.recovered)])
        #expect(machine.inRotation)

        machine = Tests.recovering()
        _ = machine.retryTimerFired(episode: 1, attempt: 1, state: .ready)
        #expect(
            machine.checked(.unhealthy(reason: "no answer", replace: true), current: true) == [
                .log(.reconnecting(attempt: 1, of: 3, step: .newChannel)), .connectReplacement(id: 1),
            ]
        )
        #expect(machine.attempt == .init(id: 1, purpose: .recovery(attempt: 1)))
    }

    @Test("A replacement that connected ends the episode; one that did not schedules the next attempt")
    func replacementOutcome() {
        var machine = Tests.recovering()
        _ = machine.retryTimerFired(episode: 1, attempt: 1, state: .shutdown)
        #expect(
            machine.replacementFinished(id: 1, connected: true) == [
                .swapIn(reason: "unresponsive (reconnection attempt 1)"), .log(.recovered),
            ]
        )
        #expect(machine.inRotation && machine.wasReady && machine.attempt == nil)

        machine = Tests.recovering()
        _ = machine.retryTimerFired(episode: 1, attempt: 1, state: .shutdown)
        #expect(machine.replacementFinished(id: 1, connected: false) == Tests.retry(1, 2, after: 2))
        #expect(machine.recovering && !machine.inRotation)
    }

    @Test("After maxRetries attempts it says so once and goes on at the capped interval")
    func exhausted() {
        var machine = Tests.recovering()
        _ = machine.retryTimerFired(episode: 1, attempt: 1, state: .connecting)
        _ = machine.retryTimerFired(episode: 1, attempt: 2, state: .connecting)
        let third = machine.retryTimerFired(episode: 1, attempt: 3, state: .connecting)
        #expect(third.contains(.log(.attemptsExhausted(retryEvery: .seconds(30)))))
        #expect(third.contains(.scheduleRetry(episode: 1, attempt: 4, after: .seconds(30))))
        let fourth = machine.retryTimerFired(episode: 1, attempt: 4, state: .connecting)
        #expect(!fourth.contains(.log(.attemptsExhausted(retryEvery: .seconds(30)))))
        #expect(fourth.contains(.scheduleRetry(episode: 1, attempt: 5, after: .seconds(30))))
        #expect(PooledConnection.LogEvent.reconnecting(attempt: 4, of: 3, step: .newChannel).message.contains("capped"))
    }

    @Test("Retry timers of an ended episode do not count")
    func staleRetry() {
        var machine = Tests.recovering()
        _ = machine.check()
        _ = machine.checked(.healthy, current: true)
        #expect(machine.retryTimerFired(episode: 1, attempt: 1, state: .shutdown) == [])
    }

    // MARK: - Ejection

    @Test("Ejected: out of rotation, a restore timer, the failure, the event, and a replacement")
    func ejected() {
        var machine = Tests.connected()
        #expect(
            machine.ejected(failures: 5, ejectionTime: .seconds(10)) == [
                .scheduleRestore(ejection: 1, after: .seconds(10)),
                .recordError("ejected after 5 failed calls in a row"),
                .emit(.ejected(failures: 5, ejectionTime: .seconds(10))),
                .connectReplacement(id: 1),
            ]
        )
        #expect(!machine.inRotation && machine.ejection != nil && machine.ejections == 1)
        #expect(machine.ejected(failures: 5, ejectionTime: .seconds(10)) == [], "already ejected")
        #expect(machine.replacementFinished(id: 1, connected: true) == [.swapIn(reason: "ejected")])
        _ = machine.check()
        #expect(machine.checked(.healthy, current: true) == [])
        #expect(!machine.inRotation, "a healthy check does not put an ejected connection back")
    }

    @Test("Only the latest ejection's timer restores; restored and healthy is the event, then rotation")
    func restored() {
        var machine = Tests.connected()
        _ = machine.ejected(failures: 5, ejectionTime: .seconds(10))
        #expect(machine.restoreTimerFired(ejection: 2) == [])
        #expect(machine.restoreTimerFired(ejection: 1) == [.check])
        #expect(machine.ejection == nil)
        #expect(machine.restoreTimerFired(ejection: 1) == [], "not ejected any more")
        #expect(machine.checked(.healthy, current: true) == [.emit(.restored)])
        #expect(machine.inRotation)
    }

    @Test("Restored but unhealthy: no event, a recovery episode instead")
    func restoredUnhealthy() {
        var machine = Tests.connected()
        _ = machine.ejected(failures: 5, ejectionTime: .seconds(10))
        _ = machine.restoreTimerFired(ejection: 1)
        let actions = machine.checked(.unhealthy(reason: "down", replace: true), current: true)
        #expect(!actions.contains(.emit(.restored)))
        #expect(actions.contains(.scheduleRetry(episode: 1, attempt: 1, after: .seconds(1))))
    }

    @Test("An eject while a replacement connects: out of rotation at once, that attempt cancelled, a new one")
    func ejectWhileReplacing() {
        var machine = Tests.connected()
        _ = machine.maxAgeReached()
        #expect(machine.attempt == .init(id: 1, purpose: .maxConnectionAge))
        #expect(machine.inRotation, "make before break: it serves while the replacement connects")
        let actions = machine.ejected(failures: 3, ejectionTime: .seconds(10))
        #expect(!machine.inRotation)
        #expect(actions.contains(.cancelReplacement(id: 1)))
        #expect(actions.last == .connectReplacement(id: 2))
        #expect(machine.replacementFinished(id: 1, connected: false) == [.discardReplacement], "the cancelled one")
        #expect(machine.replacementFinished(id: 2, connected: true) == [.swapIn(reason: "ejected")])
    }

    @Test("A recovery attempt cancelled by an eject counts as failed: the episode goes on")
    func cancelledRecoveryAttempt() {
        var machine = Tests.recovering()
        _ = machine.retryTimerFired(episode: 1, attempt: 1, state: .shutdown)
        let actions = machine.ejected(failures: 3, ejectionTime: .seconds(10))
        #expect(actions.contains(.cancelReplacement(id: 1)))
        #expect(actions.contains(.scheduleRetry(episode: 1, attempt: 2, after: .seconds(2))))
        // The next retry finds the ejection's replacement under way and waits for it.
        #expect(machine.retryTimerFired(episode: 1, attempt: 2, state: .shutdown) == Tests.retry(1, 3, after: 4))
    }

    // MARK: - The working set

    @Test("Activated: connect, check, rotation")
    func activated() {
        var machine = Tests.machine(active: false)
        #expect(machine.activated() == [.log(.activated), .emit(.connecting), .reopen, .check])
        #expect(machine.activated() == [], "already active")
        _ = machine.connectivityChanged(to: .ready)
        _ = machine.checked(.healthy, current: true)
        #expect(machine.inRotation)
    }

    @Test("Deactivated: out of rotation, the episode dropped, a drain; the drain closes the channel it drained")
    func deactivated() {
        var machine = Tests.recovering()
        #expect(machine.deactivated() == [.waitUntilDrained])
        #expect(!machine.inRotation && !machine.recovering && !machine.active)
        #expect(machine.drained(current: true) == [.closeChannel, .emit(.drained)])
        #expect(machine.drained(current: false) == [], "a channel swapped in since")
        _ = machine.activated()
        #expect(machine.drained(current: true) == [], "active again")
    }

    @Test("A deactivate while a replacement connects: out of rotation at once, the attempt cancelled")
    func deactivateWhileReplacing() {
        var machine = Tests.connected()
        _ = machine.maxAgeReached()
        #expect(machine.deactivated() == [.cancelReplacement(id: 1), .waitUntilDrained])
        #expect(!machine.inRotation && machine.attempt == nil)
        #expect(machine.replacementFinished(id: 1, connected: true) == [.discardReplacement])
    }

    @Test("maxConnectionAge replaces only a connection in rotation with no replacement under way")
    func maxAge() {
        var machine = Tests.connected()
        #expect(machine.maxAgeReached() == [.connectReplacement(id: 1)])
        #expect(machine.maxAgeReached() == [])
        #expect(machine.replacementFinished(id: 1, connected: true) == [.swapIn(reason: "maxConnectionAge")])
        _ = machine.connectivityChanged(to: .transientFailure)
        #expect(machine.maxAgeReached() == [])
    }

    @Test("After a swap the channel counts as ready: losing it is a disconnection")
    func swapThenLoss() {
        var machine = Tests.connected()
        _ = machine.maxAgeReached()
        _ = machine.replacementFinished(id: 1, connected: true)
        #expect(machine.connectivityChanged(to: .idle).first == .emit(.disconnected(reason: "idle")))
    }

    // MARK: - Moves

    @Test("Moved with make before break: the checked new channel is in rotation at once")
    func moved() {
        var machine = Tests.connected()
        #expect(machine.moveRequested(from: "a") == [.connectReplacement(id: 1)])
        #expect(machine.inRotation, "the old channel serves meanwhile")
        #expect(
            machine.replacementFinished(id: 1, connected: true) == [
                .swapIn(reason: "moved from a"), .emitMoved(from: "a"),
            ]
        )
        #expect(machine.inRotation)
    }

    @Test("Moved to a channel that has not connected: out of rotation, asked to connect, not a loss")
    func movedUnconnected() {
        var machine = Tests.connected()
        _ = machine.moveRequested(from: "a")
        #expect(
            machine.replacementFinished(id: 1, connected: false) == [
                .swapInUnconnected, .emitMoved(from: "a"), .requestConnect,
            ]
        )
        #expect(!machine.inRotation && !machine.wasReady && !machine.recovering)
    }

    @Test("Moved outside the working set: retargeted, no replacement; a second move cancels the first")
    func movedInactiveAndTwice() {
        var inactive = Tests.machine(active: false)
        #expect(inactive.moveRequested(from: "a") == [.retarget, .emitMoved(from: "a")])

        var machine = Tests.connected()
        _ = machine.moveRequested(from: "a")
        #expect(machine.moveRequested(from: "b") == [.cancelReplacement(id: 1), .connectReplacement(id: 2)])
        #expect(machine.replacementFinished(id: 2, connected: true).contains(.emitMoved(from: "b")))
    }

    @Test("Moved while recovering: a connected move ends the episode")
    func movedWhileRecovering() {
        var machine = Tests.recovering()
        _ = machine.moveRequested(from: "a")
        #expect(machine.replacementFinished(id: 1, connected: true).contains(.log(.recovered)))
        #expect(!machine.recovering && machine.inRotation)
    }

    @Test("Closed: out of rotation, its replacement cancelled, deaf to what follows")
    func closed() {
        var machine = Tests.connected()
        _ = machine.maxAgeReached()
        #expect(machine.closed() == [.cancelReplacement(id: 1)])
        #expect(!machine.inRotation)
        #expect(machine.check() == [] && machine.activated() == [] && machine.moveRequested(from: "a") == [])
    }
}
