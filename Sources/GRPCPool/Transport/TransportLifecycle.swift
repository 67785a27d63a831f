internal import GRPCCore
internal import GRPCPoolCoreBridge

/// The `ClientTransport` contract's lifecycle: open until ``beginGracefulShutdown()``, after which
/// new streams are refused with FAILED_PRECONDITION (as a ``Refusal``) and ``connect()``-style
/// waiting ends once the streams already open have closed.
final class TransportLifecycle: Sendable {
    private let state = Locked(State())

    private struct State {
        var closing = false
        var openStreams = 0
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    /// Runs `body` as one stream of a transport of `service`, counted until it ends; once
    /// shutdown has begun, `refused` runs instead, with the FAILED_PRECONDITION refusal.
    func stream<Result>(
        of service: ServiceID,
        refused: (RPCError) async throws -> Result,
        _ body: () async throws -> Result
    ) async throws -> Result {
        let opened = self.state.withLock { state -> Bool in
            guard !state.closing else { return false }
            state.openStreams += 1
            return true
        }
        guard opened else { return try await refused(Refusal.shuttingDown(service)) }
        defer { self.closeStream() }
        return try await body()
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
