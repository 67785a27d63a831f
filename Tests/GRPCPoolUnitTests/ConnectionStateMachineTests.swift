import GRPCPoolCoreBridge
import Testing

@testable import GRPCPool

@Suite("A pooled connection's state machine: no I/O, no sleeps")
struct ConnectionStateMachineTests {
    typealias Machine = PooledConnection.StateMachine
    typealias Log = PooledConnection.LogEvent

    /// Retries at 1, 2, 4 s, then every 30 s; no jitter, so that the delays are exact.
    static func machine(active: Bool = true) -> Machine {
        Machine(
            active: active,
            backoff: Backoff(initial: .seconds(1), maximum: .seconds(30), fastAttempts: 3, jitter: 0)
        )
    }

    /// A machine that has connected once and is in rotation.
    static func connected() -> Machine {
        var machine = Self.machine()
        _ = machine.connectivityChanged(to: .connecting)
        _ = machine.connectivityChanged(to: .ready)
        _ = machine.checked(.healthy, current: true)
        return machine
    }

    /// A connected machine that lost its connection: episode 1, its first retry scheduled.
    static func recovering() -> Machine {
        var machine = Self.connected()
        _ = machine.connectivityChanged(to: .transientFailure)
        return machine
    }

    static func retry(_ episode: Int, _ attempt: Int, after seconds: Int) -> [Machine.Action] {
        [
            .scheduleRetry(episode: episode, attempt: attempt, after: .seconds(seconds)),
            .log(.retryScheduled(attempt: attempt, delay: .seconds(seconds))),
        ]
    }

    // MARK: - Connectivity and checks

    @Test("Connecting: nothing to do yet")
    func connecting() {
        var machine = Self.machine()
        #expect(machine.connectivityChanged(to: .connecting) == [])
        #expect(!machine.inRotation)
    }

    @Test("Ready: connected, then checked before it goes into rotation")
    func ready() {
        var machine = Self.machine()
        #expect(machine.connectivityChanged(to: .ready) == [.emit(.connected), .check])
        #expect(!machine.inRotation)
        #expect(machine.checked(.healthy, current: true) == [])
        #expect(machine.inRotation && machine.wasReady)
    }

    @Test("A failed first attempt is a failed attempt, not a disconnection, and starts recovering")
    func failedAttempt() {
        var machine = Self.machine()
        let actions = machine.connectivityChanged(to: .transientFailure)
        #expect(actions.first == .emit(.failed(reason: "connection attempt failed")))
        #expect(actions.contains(.scheduleRetry(episode: 1, attempt: 1, after: .seconds(1))))
        #expect(!actions.contains { if case .emit(.disconnected) = $0 { true } else { false } })
        #expect(machine.recovering)
    }

    @Test("Losing a ready connection: disconnected, out of rotation, a recovery episode")
    func lost() {
        var machine = Self.connected()
        let reason = "connection lost (transientFailure)"
        #expect(
            machine.connectivityChanged(to: .transientFailure)
                == [
                    .emit(.disconnected(reason: "transientFailure")), .recordError(reason),
                    .log(.checkFailed(reason: reason)),
                ]
                + Self.retry(1, 1, after: 1)
        )
        #expect(!machine.inRotation && !machine.wasReady && machine.recovering)
    }

    @Test("GOAWAY or idle timeout (ready → idle): out of rotation and asked to reconnect at once")
    func goawayToIdle() {
        var machine = Self.connected()
        #expect(machine.connectivityChanged(to: .idle) == [.emit(.disconnected(reason: "idle")), .requestConnect])
        #expect(!machine.inRotation)
        #expect(!machine.recovering, "idle is not a failure: the core reconnects it")
        #expect(machine.connectivityChanged(to: .ready) == [.emit(.connected), .check])
        #expect(machine.checked(.healthy, current: true) == [] && machine.inRotation)
    }

    @Test("An inactive connection that goes idle is not asked to reconnect, and is never checked")
    func inactiveIdle() {
        var machine = Self.machine(active: false)
        #expect(machine.connectivityChanged(to: .idle) == [])
        #expect(machine.check() == [])
    }

    @Test("A channel shut down under the monitor counts as lost")
    func shutdown() {
        var machine = Self.connected()
        let actions = machine.connectivityChanged(to: .shutdown)
        #expect(actions.contains(.recordError("connection lost (shutdown)")))
        #expect(machine.recovering && !machine.inRotation)
    }

    @Test("A pending check takes it out of rotation without starting an episode")
    func pending() {
        var machine = Self.connected()
        _ = machine.check()
        #expect(machine.checked(.pending, current: true) == [])
        #expect(!machine.inRotation && !machine.recovering)
    }

    @Test("NOT_SERVING while connected: out of rotation, one episode, logged once")
    func notServing() {
        var machine = Self.connected()
        let reason = "health status of 'x' is NOT_SERVING"
        _ = machine.check()
        #expect(
            machine.checked(.unhealthy(reason: reason, replace: false), current: true)
                == [.recordError(reason), .log(.checkFailed(reason: reason))] + Self.retry(1, 1, after: 1)
        )
        _ = machine.check()
        #expect(machine.checked(.unhealthy(reason: reason, replace: false), current: true) == [.recordError(reason)])
        #expect(machine.episode == 1)
    }

    @Test("Recovery ends with the first passing check, logged; the next episode has its own number")
    func recovered() {
        var machine = Self.recovering()
        _ = machine.check()
        #expect(machine.checked(.healthy, current: true) == [.log(.recovered)])
        #expect(machine.inRotation && !machine.recovering)
        _ = machine.connectivityChanged(to: .transientFailure)
        #expect(machine.episode == 2)
    }

    @Test("One check at a time: another asked for meanwhile runs after it; a stale answer asks again")
    func checksCoalesce() {
        var machine = Self.connected()
        #expect(machine.check() == [.check])
        #expect(machine.check() == [])
        #expect(machine.check() == [])
        #expect(machine.checked(.healthy, current: true) == [.check], "the ones asked for meanwhile: one more")
        #expect(machine.checked(.healthy, current: false) == [.check], "the channel changed under the check")
        #expect(machine.checked(.healthy, current: true) == [])
        #expect(!machine.checking)
    }

    @Test("A call ending with UNAVAILABLE: out of rotation at once when the channel is not ready, and a check")
    func callUnavailable() {
        var machine = Self.connected()
        #expect(machine.callUnavailable(channelReady: true) == [.check])
        #expect(machine.inRotation, "a ready channel stays in rotation until its check answers")
        _ = machine.checked(.healthy, current: true)
        #expect(machine.callUnavailable(channelReady: false) == [.check])
        #expect(!machine.inRotation)
    }

    @Test("The keepalive RPC: one at a time; no answer asks for a check")
    func keepalive() {
        var machine = Self.connected()
        #expect(machine.keepaliveTimerFired() == [.keepalive])
        #expect(machine.keepaliveTimerFired() == [])
        #expect(machine.keepaliveAnswered(false) == [.check])
        #expect(machine.keepaliveTimerFired() == [.keepalive])
        #expect(machine.keepaliveAnswered(true) == [])
    }
}
