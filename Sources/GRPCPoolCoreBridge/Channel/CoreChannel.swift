internal import CGRPCCore
private import Synchronization

/// A `grpc_channel`: one target, its credentials and channel args, its connectivity.
///
/// The channel is destroyed exactly once, by ``close()`` or when the object is released.
/// Closing does not cancel calls already in flight (the core lets them run to their deadline,
/// primer §4); it stops new calls, which then fail with ``ChannelError/Code/closed``.
///
/// Connectivity is watched with one outstanding `grpc_channel_watch_connectivity_state` at all
/// times, on the runtime's shared poller (no thread or queue per channel); every change is
/// delivered to the streams from ``connectivityUpdates()``.
package final class CoreChannel: Sendable {
    /// The target exactly as given (`host:port`, `dns:///…`, `ipv4:…`, `unix:…`).
    package let target: String
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
            pointer = try options.withCoreArguments { args in
                let creds = credentials.makeCore()
                defer { grpc_channel_credentials_release(creds) }  // the channel keeps its own ref
                return grpc_channel_create(target, creds, args)!
            }
        } catch let error as ChannelError {
            throw error
        } catch {
            throw ChannelError(.invalidTarget, "\(error)")
        }
        LiveObjects.channels.increment()
        self.handle = ChannelHandle(pointer: pointer, runtime: runtime)
        self.handle.startWatching()
    }

    deinit {
        self.handle.close()
    }

    /// Destroys the channel. Idempotent. Calls in flight run on; new calls fail.
    package func close() {
        self.handle.close()
    }

    /// The current connectivity state; with `tryToConnect`, an idle channel starts connecting.
    package func state(tryToConnect: Bool = false) -> ConnectionState {
        self.handle.check(tryToConnect: tryToConnect)
    }

    /// Calls created on this channel whose `grpc_call` has not been released yet.
    package var liveCalls: Int {
        self.handle.liveCalls.value
    }

    /// A stream of connectivity states: the current one first, then every change, ending with
    /// `.shutdown` when the channel is closed.
    package func connectivityUpdates() -> AsyncStream<ConnectionState> {
        self.handle.subscribe()
    }

    /// Starts connecting and waits until the channel is `ready`, or until `timeout` passes.
    ///
    /// - Returns: the state it ended in.
    @discardableResult
    package func connect(timeout: Duration) async -> ConnectionState {
        let updates = self.connectivityUpdates()
        _ = self.state(tryToConnect: true)
        return await withTaskGroup(of: ConnectionState?.self) { group in
            group.addTask {
                var last = ConnectionState.idle
                for await state in updates {
                    last = state
                    if state == .ready || state == .shutdown { return state }
                }
                return last
            }
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
    let runtime: CoreRuntime
    /// Calls created on this channel that the core still holds.
    let liveCalls = LiveCounter()
    private let lock: Mutex<State>

    private struct State {
        var closed = false
        var lastState = ConnectionState.idle
        var nextSubscriberID = 0
        var subscribers: [Int: AsyncStream<ConnectionState>.Continuation] = [:]
    }

    init(pointer: OpaquePointer, runtime: CoreRuntime) {
        self.pointer = pointer
        self.runtime = runtime
        self.lock = Mutex(State())
    }

    func check(tryToConnect: Bool) -> ConnectionState {
        self.lock.withLock { state in
            guard !state.closed else { return .shutdown }
            return ConnectionState(grpc_channel_check_connectivity_state(self.pointer, tryToConnect ? 1 : 0))
        }
    }

    func close() {
        let subscribers: [AsyncStream<ConnectionState>.Continuation]? = self.lock.withLock { state in
            guard !state.closed else { return nil }
            state.closed = true
            state.lastState = .shutdown
            grpc_channel_destroy(self.pointer)  // completes the pending watch at once
            LiveObjects.channels.decrement()
            let subscribers = Array(state.subscribers.values)
            state.subscribers = [:]
            return subscribers
        }
        for subscriber in subscribers ?? [] {
            subscriber.yield(.shutdown)
            subscriber.finish()
        }
    }

    func subscribe() -> AsyncStream<ConnectionState> {
        let (stream, continuation) = AsyncStream.makeStream(of: ConnectionState.self)
        let added: ConnectionState? = self.lock.withLock { state in
            guard !state.closed else { return nil }
            let id = state.nextSubscriberID
            state.nextSubscriberID += 1
            state.subscribers[id] = continuation
            continuation.onTermination = { [weak self] _ in
                self?.lock.withLock { _ = $0.subscribers.removeValue(forKey: id) }
            }
            return ConnectionState(grpc_channel_check_connectivity_state(self.pointer, 0))
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
            state.lastState = ConnectionState(grpc_channel_check_connectivity_state(self.pointer, 0))
            self.armWatch(from: state.lastState)
        }
    }

    /// Must be called under `lock`, with the channel open.
    private func armWatch(from observed: ConnectionState) {
        let tag = CompletionTag.make { _ in self.watchCompleted() }
        grpc_channel_watch_connectivity_state(
            self.pointer,
            observed.core,
            gpr_inf_future(GPR_CLOCK_REALTIME),
            self.runtime.completionQueue.pointer,
            tag
        )
    }

    /// Runs on the poller: read the new state, re-arm, then tell the subscribers.
    private func watchCompleted() {
        let update: (ConnectionState, [AsyncStream<ConnectionState>.Continuation])? = self.lock.withLock { state in
            guard !state.closed else { return nil }
            let now = ConnectionState(grpc_channel_check_connectivity_state(self.pointer, 0))
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
                    self.pointer, nil, CGRPCCore_propagate_defaults, self.runtime.completionQueue.pointer,
                    methodSlice, &hostSlice, deadline, nil
                )
            } else {
                call = grpc_channel_create_call(
                    self.pointer, nil, CGRPCCore_propagate_defaults, self.runtime.completionQueue.pointer,
                    methodSlice, nil, deadline, nil
                )
            }
            return call.map { CallHandle(pointer: $0, runtime: self.runtime, channelCalls: self.liveCalls) }
        }
    }
}
