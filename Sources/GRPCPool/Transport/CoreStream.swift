internal import GRPCCore
internal import GRPCPoolCoreBridge

/// One RPC of a `ClientTransport` stream over a core call.
///
/// GRPCCore writes the request as parts (metadata, messages, end) and reads the response as
/// parts (metadata, messages, status). The request is held back until it is clear how much of it
/// can go out in the first batch: when the request ends after at most one message (unary and
/// server-streaming calls) metadata, message and half-close go out as one batch; a second message,
/// or the reader asking for the response first, starts the call with what has been written.
final class CoreStream: Sendable {
    let call: CoreCall
    let maxRequestBytes: Int?
    let maxResponseBytes: Int?
    let state: Locked<State>

    enum State {
        /// Not on the wire yet: what was written so far, and readers waiting for the start.
        case pending(metadata: Metadata?, message: [UInt8]?, closed: Bool, waiters: [CheckedContinuation<Void, Never>])
        case started
        case failed(RPCError)
    }

    init(call: CoreCall, maxRequestBytes: Int?, maxResponseBytes: Int?) {
        self.call = call
        self.maxRequestBytes = maxRequestBytes
        self.maxResponseBytes = maxResponseBytes
        self.state = Locked(.pending(metadata: nil, message: nil, closed: false, waiters: []))
    }

    // MARK: - Request side

    func write(_ part: RPCRequestPart<[UInt8]>) async throws {
        switch part {
        case .metadata(let metadata):
            self.state.withLock { state in
                if case .pending(nil, let message, let closed, let waiters) = state {
                    state = .pending(metadata: metadata, message: message, closed: closed, waiters: waiters)
                }
            }
        case .message(let message):
            if let limit = self.maxRequestBytes, message.count > limit {
                throw RPCError(
                    code: .resourceExhausted,
                    message: "request message of \(message.count) bytes exceeds the limit of \(limit) bytes"
                )
            }
            let next: AfterWrite = self.state.withLock { state in
                switch state {
                case .pending(let metadata, nil, false, let waiters):
                    state = .pending(metadata: metadata, message: message, closed: false, waiters: waiters)
                    // A reader already waits for the response: it will not come before the call starts.
                    return waiters.isEmpty ? .hold : .startHeld
                case .pending, .started:
                    return .send
                case .failed:
                    return .hold
                }
            }
            switch next {
            case .hold:
                break
            case .startHeld:
                self.startIfPending(closing: false)
            case .send:
                self.startIfPending(closing: false)
                if case .started = self.state.withLock({ $0 }) {
                    _ = await self.call.send(message)
                }
            }
        }
    }

    private enum AfterWrite {
        /// Keep the message: it may go out with the half-close in one batch.
        case hold
        /// Start the call with the message now.
        case startHeld
        /// The call is (being) started: send the message on its own.
        case send
    }

    func finish() async {
        let alreadyStarted: Bool = self.state.withLock { state in
            switch state {
            case .pending(let metadata, let message, _, let waiters):
                state = .pending(metadata: metadata, message: message, closed: true, waiters: waiters)
                return false
            case .started:
                return true
            case .failed:
                return false
            }
        }
        if alreadyStarted {
            await self.call.closeSend()
        } else {
            self.startIfPending(closing: true)
        }
    }

    func finish(throwing error: any Error) {
        self.fail(RPCError(requestStreamFailure: error))
    }

    /// Starts the call with what has been written, if it has not started yet.
    ///
    /// The start batch goes to the core under the state's lock: whoever then sees `.started` —
    /// the writer with its next message or the half-close, while the reader started the call —
    /// knows the initial metadata is already ahead of its batch (started outside the lock, the
    /// writer's next message could reach the core first). The core's `grpc_call_start_batch`
    /// does not wait: completions arrive on the poller thread, never inside it. A message that
    /// follows the start batch's own waits for it in ``CoreCall/send(_:)``.
    func startIfPending(closing: Bool) {
        let waiters: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
            guard case .pending(let metadata, let message, let closed, let waiters) = state else { return [] }
            do throws(RPCError) {
                try self.call.start(metadata: metadata ?? [:], message: message, closeSend: closed || closing)
                state = .started
            } catch {
                state = .failed(error)
            }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func fail(_ error: RPCError) {
        let waiters: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
            switch state {
            case .pending(_, _, _, let waiters):
                state = .failed(error)
                return waiters
            case .started:
                self.call.cancel()
                return []
            case .failed:
                return []
            }
        }
        for waiter in waiters { waiter.resume() }
    }
}

/// The request side of a ``CoreStream`` as GRPCCore's closable writer.
struct CoreStreamWriter: ClosableRPCWriterProtocol {
    typealias Element = RPCRequestPart<[UInt8]>
    let stream: CoreStream

    func write(_ element: RPCRequestPart<[UInt8]>) async throws {
        try await self.stream.write(element)
    }

    func write(contentsOf elements: some Sequence<RPCRequestPart<[UInt8]>>) async throws {
        for element in elements { try await self.stream.write(element) }
    }

    func finish() async {
        await self.stream.finish()
    }

    func finish(throwing error: any Error) async {
        self.stream.finish(throwing: error)
    }
}

extension RPCError {
    /// How an RPC ends when its request stream fails: an `RPCError` from the request side
    /// (grpc-swift's own message size limit, say) is the RPC's outcome; any other error cancels it.
    init(requestStreamFailure error: any Error) {
        self =
            (error as? RPCError)
            ?? RPCError(code: .cancelled, message: "the request stream failed: \(error)", cause: error)
    }
}
