internal import CGRPCCore
internal import Synchronization

/// A `grpc_channel`: one target, its credentials and channel args, its connectivity.
///
/// The channel is destroyed exactly once, after ``close()`` or when the object is released.
/// Closing does not cancel calls already in flight (the core lets them run to their deadline,
/// primer §4); it stops new calls at once, which then fail with UNAVAILABLE.
///
/// A closed channel is destroyed at once when it is READY or IDLE; when it is CONNECTING or in
/// TRANSIENT_FAILURE (where the core may be reconnecting behind the sticky state), it is
/// destroyed when it reaches READY or IDLE, or after ``ChannelHandle/destroyGrace`` at the latest.
/// The reason: libgrpc 1.51 leaks the connection, and with it an internal library reference that
/// keeps the core's threads and sockets alive after `grpc_shutdown`, when a channel is destroyed
/// in the middle of connecting to a live server (measured here: every run of 30 such closes, and
/// a third of the chaos runs that replaced channels while servers came back). A server that is
/// down refuses at once, so waiting out the grace there costs nothing but time.
///
/// Connectivity is watched with one outstanding `grpc_channel_watch_connectivity_state` at all
/// times, on the runtime's shared poller (no thread or queue per channel); every change is
/// delivered to the streams from ``connectivityUpdates()``.
package final class CoreChannel: Sendable {
    /// The target exactly as given (`host:port`, `dns:///…`, `ipv4:…`, `unix:…`).
    package let target: String
    /// Its id in the core's channelz data (``CoreChannelz``), when the core keeps any for it.
    package let channelzID: Int?
    let handle: ChannelHandle

    /// Creates the channel. No connection is made until a call or ``state(tryToConnect:)`` asks.
    ///
    /// - Throws: ``ChannelError`` when the options are invalid (a service config that is not a
    ///   JSON object) or the target is empty.
    package init(
        target: String,
        credentials: ChannelCredentials = .insecure,
        options: ChannelOptions = ChannelOptions(),
        runtime: CoreRuntime = .shared()
    ) throws(ChannelError) {
        guard !target.isEmpty else { throw ChannelError(.invalidTarget, "target is empty") }
        self.target = target
        let pointer: OpaquePointer
        do {
            (pointer, self.channelzID) = try options.withCoreArguments { args in
                CoreChannelz.creating(target: target) {
                    let creds = credentials.makeCore()
                    defer { grpc_channel_credentials_release(creds) }  // the channel keeps its own ref
                    return grpc_channel_create(target, creds, args)!
                }
            }
        } catch let error as ChannelError {
            throw error
        } catch {
            throw ChannelError(.invalidTarget, "\(error)")
        }
        LiveObjects.channels.increment()
        self.handle = ChannelHandle(pointer: pointer, target: target, runtime: runtime)
        self.handle.startWatching()
    }

    deinit {
        self.handle.close()
    }

    /// Destroys the channel. Idempotent. New calls fail with UNAVAILABLE; calls already on the
    /// wire run on, but calls still waiting for a transport fail with UNKNOWN "Channel Destroyed"
    /// (the core's own status), so close a channel that may have calls once ``waitUntilIdle()`` returns.
    package func close() {
        self.handle.close()
    }

    /// Returns once no call is live or reserved on the channel, or when the task is cancelled
    /// (the caller bounds the wait, then closes the channel).
    package func waitUntilIdle() async {
        await self.handle.calls.waitUntilIdle()
    }

    /// The current connectivity state; with `tryToConnect`, an idle channel starts connecting.
    package func state(tryToConnect: Bool = false) -> ChannelConnectivity {
        self.handle.check(tryToConnect: tryToConnect)
    }

    /// Announces a call that is about to be made on this channel: ``waitUntilIdle()`` waits
    /// for it as for a live call, so a caller that has chosen this channel before it was
    /// replaced still finds it open. Pair every reservation with ``releaseCall()``.
    package func reserveCall() {
        self.handle.calls.reserve()
    }

    /// Ends a reservation from ``reserveCall()``.
    package func releaseCall() {
        self.handle.calls.unreserve()
    }

    /// Calls created on this channel whose `grpc_call` has not been released yet.
    package var liveCalls: Int {
        self.handle.calls.liveCount
    }

    /// A stream of connectivity states: the current one first, then every change, ending with
    /// `.shutdown` when the channel is closed.
    package func connectivityUpdates() -> AsyncStream<ChannelConnectivity> {
        self.handle.subscribe()
    }

    /// Starts connecting and waits until the channel is `ready` (or shut down), or until the task
    /// is cancelled (the caller bounds the wait).
    ///
    /// - Returns: the state it ended in.
    @discardableResult
    package func connect() async -> ChannelConnectivity {
        let updates = self.connectivityUpdates()
        _ = self.state(tryToConnect: true)
        for await state in updates where state == .ready || state == .shutdown {
            return state
        }
        return self.state()
    }

    /// ``connect()`` for at most `timeout` of real time.
    @discardableResult
    package func connect(timeout: Duration) async -> ChannelConnectivity {
        await withTaskGroup(of: ChannelConnectivity?.self) { group in
            group.addTask { await self.connect() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            return first ?? self.state()
        }
    }
}

/// The owner of the `grpc_channel` pointer.
///
/// `@unchecked Sendable`: the pointer is immutable and every use of it (check, watch, create
/// call, destroy) happens under `lock`, so no core function sees it after `grpc_channel_destroy`.
final class ChannelHandle: @unchecked Sendable {
    let pointer: OpaquePointer
    /// The channel's target, named by the failures of its calls.
    let target: String
    let runtime: CoreRuntime
    /// The calls on this channel: created ones the core still holds, and reserved ones.
    let calls = ChannelCalls()
    /// The compression algorithms the server refused.
    let compressionRefusals = CompressionRefusals()
    private let lock: Locked<State>

    private struct State {
        /// No new calls; subscribers have seen `.shutdown`.
        var closed = false
        /// `grpc_channel_destroy` has run.
        var destroyed = false
        /// When a closed channel is destroyed whatever its state.
        var destroyDeadline: ContinuousClock.Instant?
        var lastState = ChannelConnectivity.idle
        var nextSubscriberID = 0
        var subscribers: [Int: AsyncStream<ChannelConnectivity>.Continuation] = [:]
    }

    init(pointer: OpaquePointer, target: String, runtime: CoreRuntime) {
        self.pointer = pointer
        self.target = target
        self.runtime = runtime
        self.lock = Locked(State())
    }

    func check(tryToConnect: Bool) -> ChannelConnectivity {
        self.lock.withLock { state in
            guard !state.closed else { return .shutdown }
            return ChannelConnectivity(grpc_channel_check_connectivity_state(self.pointer, tryToConnect ? 1 : 0))
        }
    }

    /// How long a closed channel may wait for a state in which destroying it is safe.
    static let destroyGrace = Duration.seconds(5)

    func close() {
        let subscribers: [AsyncStream<ChannelConnectivity>.Continuation]? = self.lock.withLock { state in
            guard !state.closed else { return nil }
            state.closed = true
            state.lastState = .shutdown
            let now = ChannelConnectivity(grpc_channel_check_connectivity_state(self.pointer, 0))
            if Self.safeToDestroy(now) {
                self.destroy(&state)
            } else {
                // A watch with a deadline comes back on the next change or at the grace's end.
                state.destroyDeadline = ContinuousClock.now.advanced(by: Self.destroyGrace)
                self.armWatch(from: now, deadline: state.destroyDeadline)
            }
            let subscribers = Array(state.subscribers.values)
            state.subscribers = [:]
            return subscribers
        }
        for subscriber in subscribers ?? [] {
            subscriber.yield(.shutdown)
            subscriber.finish()
        }
    }

    func subscribe() -> AsyncStream<ChannelConnectivity> {
        let (stream, continuation) = AsyncStream.makeStream(of: ChannelConnectivity.self)
        let added: ChannelConnectivity? = self.lock.withLock { state in
            guard !state.closed else { return nil }
            let id = state.nextSubscriberID
            state.nextSubscriberID += 1
            state.subscribers[id] = continuation
            continuation.onTermination = { [weak self] _ in
                self?.lock.withLock { _ = $0.subscribers.removeValue(forKey: id) }
            }
            return ChannelConnectivity(grpc_channel_check_connectivity_state(self.pointer, 0))
        }
        if let added {
            continuation.yield(added)
        } else {
            continuation.yield(.shutdown)
            continuation.finish()
        }
        return stream
    }

    /// Arms the first watch. The watch's tag retains `self`, so the handle lives until the
    /// channel is destroyed and that last watch has come back.
    func startWatching() {
        self.lock.withLock { state in
            state.lastState = ChannelConnectivity(grpc_channel_check_connectivity_state(self.pointer, 0))
            self.armWatch(from: state.lastState)
        }
    }

    private static func safeToDestroy(_ state: ChannelConnectivity) -> Bool {
        state == .ready || state == .idle || state == .shutdown
    }

    /// Must be called under `lock`, before the channel is destroyed.
    private func armWatch(from observed: ChannelConnectivity, deadline: ContinuousClock.Instant? = nil) {
        let tag = CompletionTag.make { _ in self.watchCompleted() }
        grpc_channel_watch_connectivity_state(
            self.pointer,
            observed.core,
            deadline.map { .fromNow($0 - .now) } ?? gpr_inf_future(GPR_CLOCK_REALTIME),
            self.runtime.completionQueue.pointer,
            tag
        )
    }

    /// Must be called under `lock`, once.
    private func destroy(_ state: inout State) {
        state.destroyed = true
        grpc_channel_destroy(self.pointer)  // completes the pending watch at once
        LiveObjects.channels.decrement()
    }

    /// Runs on the poller: read the new state, re-arm, then tell the subscribers; or, for a
    /// channel closed while connecting, destroy it once it no longer is.
    private func watchCompleted() {
        let update: (ChannelConnectivity, [AsyncStream<ChannelConnectivity>.Continuation])? = self.lock.withLock {
            state in
            guard !state.destroyed else { return nil }
            let now = ChannelConnectivity(grpc_channel_check_connectivity_state(self.pointer, 0))
            if state.closed {
                if Self.safeToDestroy(now) || ContinuousClock.now >= state.destroyDeadline ?? .now {
                    self.destroy(&state)
                } else {
                    self.armWatch(from: now, deadline: state.destroyDeadline)
                }
                return nil
            }
            self.armWatch(from: now)
            guard now != state.lastState else { return nil }
            state.lastState = now
            return (now, Array(state.subscribers.values))
        }
        if let (now, subscribers) = update {
            for subscriber in subscribers { subscriber.yield(now) }
        }
    }

    /// Creates a call on the runtime's queue; `nil` once the channel is closed.
    func createCall(method: String, authority: String?, deadline: gpr_timespec) -> CallHandle? {
        self.lock.withLock { state -> CallHandle? in
            guard !state.closed else { return nil }
            let methodSlice = grpc_slice_from_copied_string(method)
            defer { grpc_slice_unref(methodSlice) }
            let call: OpaquePointer?
            if let authority {
                var hostSlice = grpc_slice_from_copied_string(authority)
                defer { grpc_slice_unref(hostSlice) }
                call = grpc_channel_create_call(
                    self.pointer,
                    nil,
                    CGRPCCore_propagate_defaults,
                    self.runtime.completionQueue.pointer,
                    methodSlice,
                    &hostSlice,
                    deadline,
                    nil
                )
            } else {
                call = grpc_channel_create_call(
                    self.pointer,
                    nil,
                    CGRPCCore_propagate_defaults,
                    self.runtime.completionQueue.pointer,
                    methodSlice,
                    nil,
                    deadline,
                    nil
                )
            }
            return call.map { CallHandle(pointer: $0, channel: self) }
        }
    }
}
