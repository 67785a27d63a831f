internal import GRPCCore
internal import GRPCPoolCoreBridge

/// The `ClientTransport` contract's lifecycle: open until ``beginGracefulShutdown()``, after which
/// new streams are refused with FAILED_PRECONDITION and ``connect()``-style waiting ends once the
/// streams already open have closed.
final class TransportLifecycle: Sendable {
    private let state = Locked(State())

    private struct State {
        var closing = false
        var openStreams = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Runs `body` as one stream of the transport called `name`: refused with FAILED_PRECONDITION
    /// once shutdown has begun, and counted until it ends.
    func stream<Result>(_ name: @autoclosure () -> String, _ body: () async throws -> Result) async throws -> Result {
        try self.openStream(name())
        defer { self.closeStream() }
        return try await body()
    }

    /// Registers a new stream, or throws when the transport is shutting down.
    private func openStream(_ name: String) throws(RPCError) {
        try self.state.withLock { (state: inout State) throws(RPCError) in
            guard !state.closing else {
                throw RPCError(code: .failedPrecondition, message: "\(name) is shutting down; no new RPCs are accepted")
            }
            state.openStreams += 1
        }
    }

    private func closeStream() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.openStreams -= 1
            guard state.closing, state.openStreams == 0 else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func beginGracefulShutdown() {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.closing = true
            guard state.openStreams == 0 else { return [] }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once shutdown has begun and every stream has closed, or when the task is cancelled.
    func waitUntilClosed() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let done = self.state.withLock { state -> Bool in
                    if (state.closing && state.openStreams == 0) || Task.isCancelled { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if done { continuation.resume() }
            }
        } onCancel: {
            let waiters = self.state.withLock { state in
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }
}
