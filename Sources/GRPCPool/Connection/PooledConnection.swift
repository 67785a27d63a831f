internal import CoreMetrics
package import GRPCCore
package import GRPCPoolCoreBridge
internal import Logging
internal import Synchronization

/// One connection of a pool: a core channel with its own TCP connection, its state, its health,
/// the calls in flight on it, and its metrics.
///
/// The pool replaces the channel underneath when it stops working; the `PooledConnection`
/// (its index, its metrics) stays.
public final class PooledConnection: Sendable {
    /// The service this connection belongs to.
    public let serviceID: ServiceID
    /// Its index in the pool.
    public let index: Int
    /// Where it connects.
    public let endpoint: PoolManager.Endpoint

    let config: PoolManager.ServiceConfig
    /// The endpoint as text, made once: every RPC's `ClientContext` names it as the remote peer.
    let peer: String
    let credentials: ChannelCredentials
    let options: ChannelOptions
    let logger: Logger
    let instruments: ConnectionInstruments
    private let healthy = Atomic<Bool>(false)
    private let inFlightCalls = Atomic<Int>(0)
    private let activeLeases = Atomic<Int>(0)
    private let consecutiveFailures = Atomic<Int>(0)
    private let ejected = Atomic<Bool>(false)
    private let ejectionCount = Atomic<Int>(0)
    /// Whether it belongs to the pool's working set (dynamic sizing); inactive connections have
    /// no TCP connection and are never picked.
    private let active: Atomic<Bool>
    /// What the pool tells the monitor to do: eject, activate, deactivate.
    private let commands: AsyncStream<Command>.Continuation
    let commandStream: AsyncStream<Command>

    enum Command: Sendable {
        case eject
        case activate
        case deactivate
    }
    private let outlierDetector: OutlierDetector?
    private let events: PoolEventSink
    /// Recent latency for least-busy balancing (kept only under that policy).
    private let latency = Locked(PeakEWMA())
    private let storage: Locked<State>
    /// Tells the monitor to check at once (a call failed with UNAVAILABLE).
    private let checkRequests: AsyncStream<Void>.Continuation
    let checkRequestStream: AsyncStream<Void>
    /// The `GRPCClient` over this connection, made on first use.
    let clientStorage = Locked<CachedClient<Transport>?>(nil)
    /// Called whenever `isHealthy` or the load changes, so waiting callers can look again.
    private let onChangeHandler: @Sendable () -> Void
    /// Signalled with `onChangeHandler`: what a drain of this connection waits on.
    private let changes = ChangeSignal()

    struct State {
        var channel: CoreChannel
        var generation = 0
        var connectivity = ChannelConnectivity.idle
        var stats = Stats()
        var connectedSince: ContinuousClock.Instant?
        var everConnected = false
    }

    struct Stats {
        var successes = 0
        var failures = 0
        var reconnects = 0
        /// The latest failure: a call's error, or what the monitor found.
        var lastFailure: (error: any Error & Sendable, text: String, at: ContinuousClock.Instant)?
        var latency = LatencyHistogram()
    }

    init(
        serviceID: ServiceID,
        index: Int,
        config: PoolManager.ServiceConfig,
        credentials: ChannelCredentials,
        logger: Logger,
        metricsFactory: any MetricsFactory,
        outlierDetector: OutlierDetector? = nil,
        active: Bool = true,
        events: PoolEventSink,
        onChange: @escaping @Sendable () -> Void
    ) throws {
        self.events = events
        self.outlierDetector = outlierDetector
        self.active = Atomic(active)
        (self.commandStream, self.commands) = AsyncStream.makeStream(of: Command.self)
        self.serviceID = serviceID
        self.index = index
        self.endpoint = config.endpoint(forConnection: index)
        self.peer = self.endpoint.description
        self.config = config
        self.credentials = credentials
        self.options = config.channelOptions()
        var logger = logger
        logger[metadataKey: "grpc.pool.connection"] = "\(index)"
        logger[metadataKey: "grpc.pool.endpoint"] = "\(self.endpoint)"
        self.logger = logger
        self.instruments = ConnectionInstruments(service: serviceID, index: index, factory: metricsFactory)
        self.onChangeHandler = onChange
        let channel = try CoreChannel(
            target: self.endpoint.description,
            credentials: credentials,
            options: self.options
        )
        self.storage = Locked(State(channel: channel))
        (self.checkRequestStream, self.checkRequests) = AsyncStream.makeStream(
            of: Void.self,
            bufferingPolicy: .bufferingNewest(1)
        )
    }

    /// Whether the pool hands this connection out.
    public var isHealthy: Bool { self.healthy.load(ordering: .relaxed) }

    /// Calls running on it now.
    public var inFlight: Int { self.inFlightCalls.load(ordering: .relaxed) }

    /// Its connectivity state as last reported by the core.
    public var state: ConnectionState { ConnectionState(self.storage.withLock { $0.connectivity }) }

    /// Calls plus `withConnection` leases: what least-in-flight balancing compares.
    /// (Sequentially consistent with ``reserve()`` and ``deactivate()``: a drain that reads 0
    /// here cannot miss a call the pool has just handed this connection to.)
    package var load: Int {
        self.inFlightCalls.load(ordering: .sequentiallyConsistent)
            + self.activeLeases.load(ordering: .sequentiallyConsistent)
    }

    /// Whether it carries fewer calls than `streamCapacity`.
    var hasRoom: Bool { self.load < self.config.streamCapacity }

    /// Recent latency in milliseconds for least-busy balancing; `nil` before its first call ends.
    func latencyEstimate(at now: ContinuousClock.Instant) -> Double? {
        self.latency.withLock { $0.hasSamples ? $0.estimate(at: now).milliseconds : nil }
    }

    /// Calls in a row that failed with UNAVAILABLE or DEADLINE_EXCEEDED.
    var failuresInARow: Int { self.consecutiveFailures.load(ordering: .relaxed) }

    /// Whether the outlier detector has taken it out of rotation.
    public var isEjected: Bool { self.ejected.load(ordering: .relaxed) }

    /// Takes it out of rotation and tells the monitor (which replaces the channel and restores
    /// the connection after the ejection time). Called by the ``OutlierDetector``, under its lock.
    func eject() {
        guard self.ejected.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        self.ejectionCount.add(1, ordering: .relaxed)
        self.setHealthy(false)
        self.commands.yield(.eject)
    }

    /// Tells the pool's observers that `kind` happened to this connection.
    func emit(_ kind: PoolEvent.Kind) {
        self.events.emit(kind, connection: self.index, endpoint: self.endpoint.description)
    }

    /// Whether it is in the pool's working set now.
    public var isActive: Bool { self.active.load(ordering: .relaxed) }

    /// Brings it into the working set: the monitor connects it, and it is picked once healthy.
    func activate() {
        guard self.active.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else { return }
        self.commands.yield(.activate)
    }

    /// Takes it out of the working set: no new calls; the monitor closes its channel once the
    /// calls on it have finished.
    func deactivate() {
        guard self.active.compareExchange(expected: true, desired: false, ordering: .sequentiallyConsistent).exchanged
        else {
            return
        }
        self.setHealthy(false)
        self.commands.yield(.deactivate)
    }

    /// Ends an ejection: the failure streak starts over.
    func endEjection() {
        self.consecutiveFailures.store(0, ordering: .relaxed)
        self.ejected.store(false, ordering: .relaxed)
    }

    /// The channel calls go to now.
    package var channel: CoreChannel { self.storage.withLock { $0.channel } }

    /// A snapshot of its counters.
    public func metrics() -> ConnectionMetrics {
        let (state, stats, since) = self.storage.withLock { ($0.connectivity, $0.stats, $0.connectedSince) }
        return ConnectionMetrics(
            index: self.index,
            endpoint: self.endpoint.description,
            state: ConnectionState(state),
            isHealthy: self.isHealthy,
            totalRequests: stats.successes + stats.failures,
            successfulRequests: stats.successes,
            failedRequests: stats.failures,
            inFlight: self.inFlight,
            reconnects: stats.reconnects,
            isActive: self.isActive,
            isEjected: self.isEjected,
            ejections: self.ejectionCount.load(ordering: .relaxed),
            lastError: stats.lastFailure?.text,
            connectedSince: since,
            averageResponseTime: stats.latency.mean,
            p50ResponseTime: stats.latency.percentile(0.5),
            p99ResponseTime: stats.latency.percentile(0.99)
        )
    }

    var latencyHistogram: LatencyHistogram { self.storage.withLock { $0.stats.latency } }

    /// The latest failure on it, with when it happened.
    var lastFailure: (error: any Error & Sendable, at: ContinuousClock.Instant)? {
        self.storage.withLock { state in state.stats.lastFailure.map { ($0.error, $0.at) } }
    }

    // MARK: - Calls

    /// Makes a unary call on raw bytes and records it.
    package func unary(
        method: String,
        request: [UInt8],
        metadata: Metadata = [:],
        options: CoreCallOptions? = nil,
        reserved: Bool = false
    ) async throws(RPCError) -> UnaryResponse {
        let options = options ?? CoreCallOptions(timeout: self.config.timeout)
        let call = self.beginCall(reserved: reserved)
        do {
            let response = try await call.channel.unary(
                method: method,
                request: request,
                metadata: metadata,
                options: options
            )
            self.endCall(call, error: nil)
            return response
        } catch {
            self.endCall(call, error: error)
            throw error
        }
    }

    /// Runs a streaming call on raw bytes and records its outcome (the status, or the error
    /// `body` threw).
    package func withCall<Result>(
        method: String,
        metadata: Metadata = [:],
        options: CoreCallOptions? = nil,
        _ body: (CoreCall) async throws -> Result
    ) async throws -> Result {
        let options = options ?? CoreCallOptions(timeout: self.config.timeout)
        let started = self.beginCall(reserved: false)
        do {
            let (result, status) = try await started.channel.withCall(
                method: method,
                metadata: metadata,
                options: options
            ) {
                call in
                let result = try await body(call)
                return (result, call.finishedStatus)
            }
            self.endCall(started, error: status?.error)
            return result
        } catch {
            self.endCall(started, error: error as? RPCError ?? RPCError(code: .unknown, message: "\(error)"))
            throw error
        }
    }

    /// A call between ``beginCall(reserved:)`` and ``endCall(_:error:)``: the channel it runs on
    /// (which stays open for it even if the connection swaps channels meanwhile) and its start.
    struct StartedCall {
        let channel: CoreChannel
        let start: ContinuousClock.Instant
    }

    /// Counts a call the pool is handing this connection, before the call starts, so that a
    /// drain (the connection leaving the working set) waits for it like a running call.
    ///
    /// - Returns: `false`, counting nothing, when the connection has left the working set since
    ///   it was picked; the pool then picks again.
    func reserve() -> Bool {
        self.inFlightCalls.add(1, ordering: .sequentiallyConsistent)
        guard self.active.load(ordering: .sequentiallyConsistent) else {
            self.inFlightCalls.subtract(1, ordering: .sequentiallyConsistent)
            self.onChange()
            return false
        }
        return true
    }

    /// Turns a reservation into a `withConnection` lease (the load stays the same throughout).
    func leaseReserved() {
        self.activeLeases.add(1, ordering: .sequentiallyConsistent)
        self.inFlightCalls.subtract(1, ordering: .sequentiallyConsistent)
    }

    /// Starts counting a call; `reserved` when ``reserve()`` already counted it. The channel is
    /// read and reserved in one step, so a channel swap cannot close it under the call.
    func beginCall(reserved: Bool) -> StartedCall {
        if !reserved { self.inFlightCalls.add(1, ordering: .relaxed) }
        let channel = self.storage.withLock { state in
            state.channel.reserveCall()
            return state.channel
        }
        return StartedCall(channel: channel, start: .now)
    }

    /// Records a finished call. An UNAVAILABLE failure takes the connection out of rotation if
    /// its channel is no longer ready, and asks the monitor for a check at once.
    func endCall(_ call: StartedCall, error: RPCError?) {
        let latency = ContinuousClock.now - call.start
        call.channel.releaseCall()
        self.inFlightCalls.subtract(1, ordering: .relaxed)
        let (seconds, attoseconds) = latency.components
        self.instruments.latency.recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        (error == nil ? self.instruments.successes : self.instruments.failures).increment()
        self.storage.withLock { state in
            state.stats.latency.record(latency)
            if let error {
                state.stats.failures += 1
                state.stats.lastFailure = (error, "\(error.code): \(error.message)", .now)
            } else {
                state.stats.successes += 1
            }
        }
        let connectionFailure = error.map { Self.isConnectionFailure($0.code) } ?? false
        if connectionFailure {
            let streak = self.consecutiveFailures.add(1, ordering: .relaxed).newValue
            if let detector = self.outlierDetector, streak >= detector.settings.consecutiveFailures, !self.isEjected {
                detector.failureStreak(of: self)
            }
        } else {
            self.consecutiveFailures.store(0, ordering: .relaxed)
        }
        if self.config.balancing == .leastBusy {
            // A connection failure counts as a call of at least a second, so that a connection
            // that fails fast looks slow, not idle.
            let sample = connectionFailure ? max(latency, Self.failurePenalty) : latency
            self.latency.withLock { $0.record(sample) }
        }
        if error?.code == .unavailable {
            // A channel that is no longer ready leaves rotation now, not only once its
            // connectivity watch has reached the monitor: fewer calls pick a dead connection.
            if self.channel.state() != .ready { self.setHealthy(false) }
            self.checkRequests.yield()
        }
        self.onChange()
    }

    /// Tells the pool, and a drain waiting here, that the health or the load changed.
    private func onChange() {
        self.changes.signal()
        self.onChangeHandler()
    }

    /// Returns once no call or lease is left on the connection, or after `timeLimit`.
    func waitUntilUnloaded(timeLimit: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while true {
                    let observed = self.changes.generation
                    if self.load == 0 { return }
                    do { try await self.changes.wait(after: observed) } catch { return }
                }
            }
            group.addTask { try? await Task.sleep(for: timeLimit) }
            await group.next()
            group.cancelAll()
        }
    }

    /// The latency a connection failure counts as, for least-busy balancing.
    static let failurePenalty = Duration.seconds(1)

    /// Codes that say something about the connection rather than about the call.
    static func isConnectionFailure(_ code: RPCError.Code) -> Bool {
        code == .unavailable || code == .deadlineExceeded
    }

    func unlease() {
        self.activeLeases.subtract(1, ordering: .relaxed)
        self.onChange()
    }

    // MARK: - Used by the monitor

    /// Puts it in or out of rotation. It is never in rotation while inactive or ejected.
    func setHealthy(_ healthy: Bool) {
        let healthy = healthy && self.isActive && !self.isEjected
        let old = self.healthy.exchange(healthy, ordering: .relaxed)
        if old != healthy {
            self.instruments.healthy.record(healthy ? 1 : 0)
            self.onChange()
        }
    }

    /// Records a connectivity change of the current channel (a `ready` after the first counts as
    /// a reconnection); returns whether it was one.
    func connectivityChanged(_ connectivity: ChannelConnectivity, generation: Int) -> Bool {
        self.storage.withLock { state in
            guard generation == state.generation, state.connectivity != connectivity else { return false }
            state.connectivity = connectivity
            if connectivity == .ready {
                state.connectedSince = .now
                if state.everConnected {
                    state.stats.reconnects += 1
                    self.instruments.reconnects.increment()
                }
                state.everConnected = true
            } else {
                state.connectedSince = nil
            }
            return true
        }
    }

    /// Puts a new channel in place of the old one, which is closed (its calls run on).
    func replaceChannel(with channel: CoreChannel) -> (generation: Int, old: CoreChannel) {
        self.storage.withLock { state in
            let old = state.channel
            state.channel = channel
            state.generation += 1
            state.connectivity = channel.state()
            state.connectedSince = state.connectivity == .ready ? .now : nil
            state.stats.reconnects += 1
            self.instruments.reconnects.increment()
            state.everConnected = true
            return (state.generation, old)
        }
    }

    var currentGeneration: (Int, CoreChannel) { self.storage.withLock { ($0.generation, $0.channel) } }

    func recordError(_ message: String) {
        let error = GRPCPoolError(code: .connectionFailed, message: "\(self.endpoint): \(message)")
        self.storage.withLock { $0.stats.lastFailure = (error, message, .now) }
    }

    func makeChannel() throws -> CoreChannel {
        try CoreChannel(target: self.endpoint.description, credentials: self.credentials, options: self.options)
    }

    func requestCheck() {
        self.checkRequests.yield()
    }

    /// Closes the current channel (when the connection leaves the working set, it stays, to be
    /// activated again with a new channel; ``close()`` closes it for good).
    func closeChannel() {
        self.storage.withLock { state in
            state.channel.close()
            state.connectivity = .shutdown
            state.connectedSince = nil
        }
    }

    func close() {
        self.clientStorage.withLock { $0?.transport.beginGracefulShutdown() }
        self.setHealthy(false)
        self.checkRequests.finish()
        self.commands.finish()
        self.closeChannel()
        self.emit(.closed)
    }
}
