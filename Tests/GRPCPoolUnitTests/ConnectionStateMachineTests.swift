import GRPCPoolCoreBridge
import Testing

@testable import GRPCPool

@Suite("A pooled connection's state machine: no I/O, no sleeps")
struct ConnectionStateMachineTests {
    typealias Machine = PooledConnection.StateMachine
    typealias Facts = Machine.Facts

    static let inRotation = Facts(isActive: true, isHealthy: true, isEjected: false)
    static let outOfRotation = Facts(isActive: true, isHealthy: false, isEjected: false)
    static let inactive = Facts(isActive: false, isHealthy: false, isEjected: false)
    static let ejected = Facts(isActive: true, isHealthy: false, isEjected: true)

    static func machine() -> Machine { Machine(maxRetries: 3, maxRetryDelay: .seconds(30)) }

    /// A machine that has connected once and is in rotation.
    static func connected() -> Machine {
        var machine = Self.machine()
        _ = machine.connectivityChanged(to: .connecting, facts: Self.outOfRotation)
        _ = machine.connectivityChanged(to: .ready, facts: Self.outOfRotation)
        _ = machine.probed(.healthy, facts: Self.outOfRotation)
        return machine
    }

    // MARK: - Connectivity

    @Test("Connecting: nothing to do yet")
    func connecting() {
        var machine = Self.machine()
        #expect(machine.connectivityChanged(to: .connecting, facts: Self.outOfRotation) == [])
    }

    @Test("Ready: connected, then checked before it goes into rotation")
    func ready() {
        var machine = Self.machine()
        #expect(machine.connectivityChanged(to: .ready, facts: Self.outOfRotation) == [.emit(.connected), .probe])
        #expect(machine.probed(.healthy, facts: Self.outOfRotation) == [.setHealthy(true)])
        #expect(machine.wasReady)
    }

    @Test("A failed first attempt is a failed attempt, not a disconnection, and starts recovering")
    func failedAttempt() {
        var machine = Self.machine()
        let actions = machine.connectivityChanged(to: .transientFailure, facts: Self.outOfRotation)
        #expect(actions.first == .emit(.failed(reason: "connection attempt failed")))
        #expect(actions.contains(.scheduleRetry(episode: 1, attempt: 1)))
        #expect(!actions.contains { if case .emit(.disconnected) = $0 { true } else { false } })
        #expect(machine.recovering)
    }

    @Test("Losing a ready connection: disconnected, out of rotation, a recovery episode")
    func lost() {
        var machine = Self.connected()
        let actions = machine.connectivityChanged(to: .transientFailure, facts: Self.inRotation)
        #expect(
            actions == [
                .emit(.disconnected(reason: "transientFailure")),
                .setHealthy(false),
                .recordError("connection lost (transientFailure)"),
                .log("health check failed", reason: "connection lost (transientFailure)"),
                .scheduleRetry(episode: 1, attempt: 1),
            ]
        )
        #expect(!machine.wasReady)
    }

    @Test("GOAWAY or idle timeout (ready → idle): out of rotation and asked to reconnect at once")
    func goawayToIdle() {
        var machine = Self.connected()
        #expect(
            machine.connectivityChanged(to: .idle, facts: Self.inRotation) == [
                .emit(.disconnected(reason: "idle")), .setHealthy(false), .requestConnect,
            ]
        )
        #expect(!machine.recovering, "idle is not a failure: the core reconnects it")
    }

    @Test("An inactive connection that goes idle is not asked to reconnect")
    func idleInactive() {
        var machine = Self.machine()
        #expect(machine.connectivityChanged(to: .idle, facts: Self.inactive) == [.setHealthy(false)])
    }

    @Test("GOAWAY then reconnection: ready again, checked, back in rotation, no recovery episode")
    func goawayAndBack() {
        var machine = Self.connected()
        _ = machine.connectivityChanged(to: .idle, facts: Self.inRotation)
        _ = machine.connectivityChanged(to: .connecting, facts: Self.outOfRotation)
        #expect(machine.connectivityChanged(to: .ready, facts: Self.outOfRotation) == [.emit(.connected), .probe])
        #expect(machine.probed(.healthy, facts: Self.outOfRotation) == [.setHealthy(true)])
        #expect(machine.episode == 0)
    }

    @Test("A channel shut down under the monitor counts as lost")
    func shutdown() {
        var machine = Self.connected()
        let actions = machine.connectivityChanged(to: .shutdown, facts: Self.inRotation)
        #expect(actions.contains(.recordError("connection lost (shutdown)")))
        #expect(actions.contains(.scheduleRetry(episode: 1, attempt: 1)))
    }

    // MARK: - Checks

    @Test("A pending check takes it out of rotation without starting an episode")
    func pending() {
        var machine = Self.connected()
        #expect(machine.probed(.pending, facts: Self.inRotation) == [.setHealthy(false)])
        #expect(!machine.recovering)
    }

    @Test("NOT_SERVING while connected: out of rotation, one episode, logged once")
    func notServing() {
        var machine = Self.connected()
        let unhealthy = HealthProbe.unhealthy(reason: "NOT_SERVING", replace: false)
        #expect(
            machine.probed(unhealthy, facts: Self.inRotation) == [
                .setHealthy(false), .recordError("NOT_SERVING"), .log("health check failed", reason: "NOT_SERVING"),
                .scheduleRetry(episode: 1, attempt: 1),
            ]
        )
        // Failing again while recovering: recorded, not logged, no second episode.
        #expect(
            machine.probed(unhealthy, facts: Self.outOfRotation) == [.setHealthy(false), .recordError("NOT_SERVING")]
        )
        #expect(machine.episode == 1)
    }

    @Test("Recovery ends with the first passing check, logged")
    func recovered() {
        var machine = Self.connected()
        _ = machine.probed(.unhealthy(reason: "x", replace: true), facts: Self.inRotation)
        #expect(
            machine.probed(.healthy, facts: Self.outOfRotation) == [.log("connection recovered"), .setHealthy(true)]
        )
        #expect(!machine.recovering)
    }

    @Test("An unhealthy inactive connection is only kept out of rotation")
    func unhealthyInactive() {
        var machine = Self.machine()
        #expect(machine.probed(.unhealthy(reason: "x", replace: true), facts: Self.inactive) == [.setHealthy(false)])
        #expect(!machine.recovering)
    }

    @Test("A healthy check does not put an ejected connection back")
    func healthyWhileEjected() {
        var machine = Self.connected()
        _ = machine.probed(.unhealthy(reason: "x", replace: true), facts: Self.inRotation)
        #expect(machine.probed(.healthy, facts: Self.ejected) == [])
        #expect(!machine.recovering, "the episode is over; the restore timer decides")
    }

    @Test("A second episode after a recovery has its own number")
    func secondEpisode() {
        var machine = Self.connected()
        _ = machine.probed(.unhealthy(reason: "a", replace: true), facts: Self.inRotation)
        _ = machine.probed(.healthy, facts: Self.outOfRotation)
        let actions = machine.probed(.unhealthy(reason: "b", replace: true), facts: Self.inRotation)
        #expect(actions.last == .scheduleRetry(episode: 2, attempt: 1))
        #expect(!machine.isCurrent(episode: 1))
        #expect(machine.isCurrent(episode: 2))
    }

    // MARK: - Recovery attempts

    /// A machine in its first recovery episode.
    static func recovering() -> Machine {
        var machine = Self.connected()
        _ = machine.probed(.unhealthy(reason: "lost", replace: true), facts: Self.inRotation)
        return machine
    }

    @Test(
        "Each attempt, by the channel's state",
        arguments: [
            (
                ChannelConnectivity.connecting, "reconnection attempt 1 of 3: the channel is reconnecting (connecting)",
                false
            ),
            (.transientFailure, "reconnection attempt 1 of 3: the channel is reconnecting (transientFailure)", false),
            (.idle, "reconnection attempt 1 of 3: asking the idle channel to connect", true),
        ]
    )
    func attemptLeftToTheCore(state: ChannelConnectivity, log: String, asksToConnect: Bool) {
        var machine = Self.recovering()
        let expected: [Machine.Action] =
            [.log(log)] + (asksToConnect ? [.requestConnect] : []) + [.scheduleRetry(episode: 1, attempt: 2)]
        #expect(
            machine.retry(attempt: 1, state: state, healthyNow: false, facts: Self.outOfRotation) == .actions(expected)
        )
    }

    @Test(
        "Ready but failing its checks (unresponsive): a replacement channel",
        arguments: [ChannelConnectivity.ready, .shutdown]
    )
    func unresponsiveIsReplaced(state: ChannelConnectivity) {
        var machine = Self.recovering()
        #expect(
            machine.retry(attempt: 2, state: state, healthyNow: false, facts: Self.outOfRotation)
                == .replace(
                    log: "reconnection attempt 2 of 3: connecting a new channel",
                    reason: "unresponsive (reconnection attempt 2)"
                )
        )
    }

    @Test("A replacement that connected ends the episode; one that did not schedules the next attempt")
    func replacementOutcome() {
        var machine = Self.recovering()
        #expect(
            machine.replacement(connected: false, attempt: 1, facts: Self.outOfRotation) == [
                .scheduleRetry(episode: 1, attempt: 2)
            ]
        )
        #expect(
            machine.replacement(connected: true, attempt: 2, facts: Self.outOfRotation) == [
                .log("connection recovered"), .setHealthy(true),
            ]
        )
        #expect(!machine.recovering)
    }

    @Test("Ready and healthy at the attempt: recovered by itself")
    func recoveredByItself() {
        var machine = Self.recovering()
        #expect(
            machine.retry(attempt: 1, state: .ready, healthyNow: true, facts: Self.outOfRotation)
                == .actions([.log("connection recovered"), .setHealthy(true)])
        )
    }

    @Test("After maxRetries attempts it says so once and goes on at the capped interval")
    func exhausted() {
        var machine = Self.recovering()
        let third = machine.retry(attempt: 3, state: .transientFailure, healthyNow: false, facts: Self.outOfRotation)
        #expect(
            third
                == .actions([
                    .log("reconnection attempt 3 of 3: the channel is reconnecting (transientFailure)"),
                    .log("reconnection attempts exhausted; retrying every 30.0 seconds until it recovers"),
                    .scheduleRetry(episode: 1, attempt: 4),
                ])
        )
        let fourth = machine.retry(attempt: 4, state: .transientFailure, healthyNow: false, facts: Self.outOfRotation)
        #expect(
            fourth
                == .actions([
                    .log(
                        "reconnection attempt 4 (at the capped interval): the channel is reconnecting (transientFailure)"
                    ),
                    .scheduleRetry(episode: 1, attempt: 5),
                ])
        )
    }

    @Test("A whole episode: lost, reconnecting twice, then back")
    func wholeEpisode() {
        var machine = Self.connected()
        _ = machine.connectivityChanged(to: .transientFailure, facts: Self.inRotation)
        #expect(machine.isCurrent(episode: 1))
        _ = machine.retry(attempt: 1, state: .transientFailure, healthyNow: false, facts: Self.outOfRotation)
        _ = machine.retry(attempt: 2, state: .connecting, healthyNow: false, facts: Self.outOfRotation)
        #expect(machine.connectivityChanged(to: .ready, facts: Self.outOfRotation) == [.emit(.connected), .probe])
        #expect(
            machine.probed(.healthy, facts: Self.outOfRotation) == [.log("connection recovered"), .setHealthy(true)]
        )
        #expect(!machine.isCurrent(episode: 1), "a retry timer still pending for episode 1 is ignored")
    }

    @Test("Retry timers of an ended episode do not count")
    func staleRetry() {
        var machine = Self.recovering()
        _ = machine.probed(.healthy, facts: Self.outOfRotation)
        #expect(!machine.isCurrent(episode: 1))
    }

    // MARK: - Ejection

    @Test("Ejected: a restore timer, the failure, the event, and a new channel")
    func eject() {
        var machine = Self.connected()
        #expect(
            machine.ejected(failures: 5, ejectionTime: .seconds(10)) == [
                .scheduleRestore(ejection: 1, after: .seconds(10)),
                .recordError("ejected after 5 failed calls in a row"),
                .emit(.ejected(failures: 5, ejectionTime: .seconds(10))),
                .replaceChannel(reason: "ejected"),
            ]
        )
    }

    @Test("Only the latest ejection's timer restores, and only while ejected")
    func restoreTimers() {
        var machine = Self.connected()
        _ = machine.ejected(failures: 5, ejectionTime: .seconds(10))
        _ = machine.ejected(failures: 5, ejectionTime: .seconds(10))
        #expect(!machine.restores(ejection: 1, facts: Self.ejected))
        #expect(machine.restores(ejection: 2, facts: Self.ejected))
        #expect(!machine.restores(ejection: 2, facts: Self.outOfRotation))
    }

    @Test("Restored and healthy: the event, then back in rotation")
    func restoredHealthy() {
        var machine = Self.connected()
        _ = machine.ejected(failures: 5, ejectionTime: .seconds(10))
        #expect(machine.restored(.healthy, facts: Self.outOfRotation) == [.emit(.restored), .setHealthy(true)])
    }

    @Test("Restored but unhealthy: no event, a recovery episode instead")
    func restoredUnhealthy() {
        var machine = Self.connected()
        _ = machine.ejected(failures: 5, ejectionTime: .seconds(10))
        let actions = machine.restored(.unhealthy(reason: "still down", replace: true), facts: Self.outOfRotation)
        #expect(!actions.contains(.emit(.restored)))
        #expect(actions.last == .scheduleRetry(episode: 1, attempt: 1))
    }

    // MARK: - Working set and refresh

    @Test("Activated: connect, check, rotation")
    func activated() {
        let machine = Self.machine()
        #expect(machine.activated() == [.log("connection activated"), .emit(.connecting), .requestConnect, .probe])
    }

    @Test("Deactivated: out of rotation, the episode dropped, a drain")
    func deactivated() {
        var machine = Self.recovering()
        #expect(machine.deactivated() == [.setHealthy(false), .waitUntilDrained])
        #expect(!machine.recovering)
    }

    @Test(
        "After the drain the channel closes only if it is still inactive and the same channel",
        arguments: [(false, true, true), (true, true, false), (false, false, false)]
    )
    func drained(isActive: Bool, current: Bool, closes: Bool) {
        let machine = Self.machine()
        #expect(
            machine.drained(isActive: isActive, current: current) == (closes ? [.closeChannel, .emit(.drained)] : [])
        )
    }

    @Test(
        "maxConnectionAge refreshes only a healthy, active, not ejected connection",
        arguments: [
            (Facts(isActive: true, isHealthy: true, isEjected: false), true),
            (Facts(isActive: true, isHealthy: false, isEjected: false), false),
            (Facts(isActive: false, isHealthy: true, isEjected: false), false),
            (Facts(isActive: true, isHealthy: true, isEjected: true), false),
        ]
    )
    func refresh(facts: Facts, refreshes: Bool) {
        #expect(Self.machine().refreshes(facts: facts) == refreshes)
    }

    @Test("After a swap the channel counts as ready: losing it is a disconnection")
    func swapThenLoss() {
        var machine = Self.machine()
        machine.swapped()
        let actions = machine.connectivityChanged(to: .transientFailure, facts: Self.inRotation)
        #expect(actions.first == .emit(.disconnected(reason: "transientFailure")))
    }

    // MARK: - Moving to another address

    @Test("Moved with make before break: the checked new channel is in rotation at once")
    func movedConnected() {
        var machine = Self.connected()
        #expect(machine.moved(connected: true, facts: Self.inRotation) == [.setHealthy(true)])
        #expect(machine.wasReady)
        #expect(!machine.recovering)
    }

    @Test("Moved to a channel that has not connected yet: out of rotation, asked to connect, not a loss")
    func movedUnconnected() {
        var machine = Self.connected()
        #expect(machine.moved(connected: false, facts: Self.inRotation) == [.setHealthy(false), .requestConnect])
        #expect(!machine.wasReady)
        // Its first attempt failing is a failed attempt, not a disconnection.
        let actions = machine.connectivityChanged(to: .transientFailure, facts: Self.outOfRotation)
        #expect(actions.first == .emit(.failed(reason: "connection attempt failed")))
        // Once it is ready it is checked, then back in rotation.
        #expect(machine.connectivityChanged(to: .ready, facts: Self.outOfRotation) == [.emit(.connected), .probe])
    }

    @Test("Moved while recovering: a connected move ends the episode")
    func movedWhileRecovering() {
        var machine = Self.recovering()
        #expect(
            machine.moved(connected: true, facts: Self.outOfRotation) == [
                .log("connection recovered"), .setHealthy(true),
            ]
        )
        #expect(!machine.recovering)
    }
}
