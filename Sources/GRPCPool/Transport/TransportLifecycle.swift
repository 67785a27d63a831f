internal import GRPCCore
internal import GRPCPoolCoreBridge

/// The `ClientTransport` contract's lifecycle: open until ``beginGracefulShutdown()``, after which
/// new streams are refused with FAILED_PRECONDITION (as a ``Refusal``) and ``connect()``-style
/// waiting ends once the streams already open have closed.
final class TransportLifecycle: Sendable {
    private let state = Locked(State())

    private struct State: Sendable {
        var closing = false
        var openStreams = 0
        var waiters = WaiterQueue<Void>()

        var closed: Bool { self.closing && self.openStreams == 0 }
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
        self.state.withLock { state in
            state.openStreams -= 1
            return state.closed ? state.waiters.removeAll() : .none
        }.resume(returning: ())
    }

    func beginGracefulShutdown() {
        self.state.withLock { state in
            state.closing = true
            return state.closed ? state.waiters.removeAll() : .none
        }.resume(returning: ())
    }

    /// Returns once shutdown has begun and every stream has closed, or when the task is cancelled.
    func waitUntilClosed() async {
        await self.state.wait(in: \.waiters, until: { $0.closed ? () : nil }, cancelled: ())
    }
}
