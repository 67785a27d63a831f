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

    /// Counts a new stream of the transport, until ``closeStream()``; `false` (counting nothing)
    /// once shutdown has begun, when the stream is refused with FAILED_PRECONDITION.
    ///
    /// Two synchronous calls rather than one wrapping the stream's body: an async wrapper is one
    /// more frame, and more executor checks, on every RPC.
    func openStream() -> Bool {
        self.state.withLock { state -> Bool in
            guard !state.closing else { return false }
            state.openStreams += 1
            return true
        }
    }

    func closeStream() {
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
