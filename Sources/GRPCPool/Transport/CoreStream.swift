internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Synchronization

/// One RPC of a `ClientTransport` stream over a core call.
///
/// GRPCCore writes the request as parts (metadata, messages, end) and reads the response as
/// parts (metadata, messages, status). The request is held back until it is clear how much of it
/// can go out in the first batch: when the request ends after at most one message (unary and
/// server-streaming calls) metadata, message and half-close go out as one batch; a second message,
/// or the reader asking for the response first, starts the call with what has been written.
///
/// A reader that asks first waits for the request's one message when the method has one (its
/// descriptor says unary or server streaming); on any other call it starts the call as soon as
/// the metadata is written, since the client may wait for the server's first message before it
/// writes one (a server that speaks first).
final class CoreStream: Sendable {
    let call: CoreCall
    /// The attempt's span, whose context goes out with the metadata.
    let trace: AttemptTrace?
    /// The request is exactly one message: a reader waits for it before starting the call.
    let requestIsOneMessage: Bool
    let maxRequestBytes: Int?
    let maxResponseBytes: Int?
    let state: Locked<State>

    struct State: Sendable {
        var phase = Phase.pending(metadata: nil, message: nil, closed: false)
        /// Readers waiting for the start.
        var starters = WaiterQueue<StartWait>()
        /// The call's end is recorded (``ended(_:)``).
        var ended = false

        /// Whether a reader waiting for the start starts the call now.
        func readerStarts(_ requestIsOneMessage: Bool) -> Bool {
            guard case .pending(.some, let message, _) = self.phase else { return false }
            return message != nil || !requestIsOneMessage
        }

        /// Whether the metadata just written starts the call: a reader already waits for it.
        func startsOnMetadata(_ requestIsOneMessage: Bool) -> Bool {
            !self.starters.isEmpty && self.readerStarts(requestIsOneMessage)
        }
    }

    enum Phase: Sendable {
        /// Not on the wire yet: what was written so far.
        case pending(metadata: Metadata?, message: [UInt8]?, closed: Bool)
        case started
        case failed(RPCError)
    }

    /// How a reader's wait for the start ends.
    enum StartWait: Sendable {
        /// The call is on the wire, or failed.
        case ready
        /// Enough of the request is written: the reader starts the call itself.
        case start
        case cancelled
    }

    /// Records the call's end on its connection: its error, and the bytes of the messages it
    /// sent and received.
    private let onEnd: @Sendable (RPCError?, Int, Int) -> Void
    /// The bytes of the request messages written, and of the response messages read.
    private let sentBytes = Atomic<Int>(0)
    let receivedBytes = Atomic<Int>(0)

    init(
        call: CoreCall,
        trace: AttemptTrace? = nil,
        requestIsOneMessage: Bool,
        maxRequestBytes: Int?,
        maxResponseBytes: Int?,
        onEnd: @escaping @Sendable (RPCError?, Int, Int) -> Void
    ) {
        self.onEnd = onEnd
        self.call = call
        self.trace = trace
        self.requestIsOneMessage = requestIsOneMessage
        self.maxRequestBytes = maxRequestBytes
        self.maxResponseBytes = maxResponseBytes
        self.state = Locked(State())
    }

    // MARK: - Request side

    func write(_ part: RPCRequestPart<[UInt8]>) async throws {
        switch part {
        case .metadata(var metadata):
            self.trace?.inject(into: &metadata)
            let start: Bool = self.state.withLock { state in
                guard case .pending(nil, let message, let closed) = state.phase else { return false }
                state.phase = .pending(metadata: metadata, message: message, closed: closed)
                return state.startsOnMetadata(self.requestIsOneMessage)
            }
            if start { self.startIfPending(closing: false) }
        case .message(let message):
            if let limit = self.maxRequestBytes, message.count > limit {
                throw RPCError(
                    code: .resourceExhausted,
                    message: "request message of \(message.count) bytes exceeds the limit of \(limit) bytes"
                )
            }
            self.sentBytes.add(message.count, ordering: .relaxed)
            let next: AfterWrite = self.state.withLock { state in
                switch state.phase {
                case .pending(let metadata, nil, false):
                    state.phase = .pending(metadata: metadata, message: message, closed: false)
                    // A reader already waits for the response: it will not come before the call starts.
                    return state.starters.isEmpty ? .hold : .startHeld
                case .pending:
                    return .startAndSend
                case .started:
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
            case .startAndSend:
                self.startIfPending(closing: false)
                if case .started = self.state.withLock({ $0.phase }) {
                    _ = await self.call.send(message)
                }
            case .send:
                // The call is on the wire: every later message takes this one lock of the stream's.
                _ = await self.call.send(message)
            }
        }
    }

    private enum AfterWrite {
        /// Keep the message: it may go out with the half-close in one batch.
        case hold
        /// Start the call with the message now.
        case startHeld
        /// A message is held: start the call with it, then send this one on its own.
        case startAndSend
        /// The call is started: send the message on its own.
        case send
    }

    func finish() async {
        // A request producer that ended because the RPC was cancelled does not end the request:
        // the server is to see the cancellation, not a half-close just before it.
        if Task.isCancelled { return self.fail(RPCError(code: .cancelled, message: "the RPC was cancelled")) }
        let alreadyStarted: Bool = self.state.withLock { state in
            switch state.phase {
            case .pending(let metadata, let message, _):
                state.phase = .pending(metadata: metadata, message: message, closed: true)
                return false
            case .started:
                return true
            case .failed:
                return false
            }
        }
        if alreadyStarted {
            self.call.closeSend()
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
        let waiters = self.state.withLock { state -> Resumption<StartWait> in
            guard case .pending(let metadata, let message, let closed) = state.phase else { return .none }
            do throws(RPCError) {
                try self.call.start(metadata: metadata ?? [:], message: message, closeSend: closed || closing)
                state.phase = .started
            } catch {
                state.phase = .failed(error)
            }
            return state.starters.removeAll()
        }
        waiters.resume(returning: .ready)
    }

    /// Records the call's end, once: as the caller gets its status (so that the count is in
    /// before the caller has its answer), or when the transport is done with the RPC.
    func ended(_ error: RPCError?) {
        let first = self.state.withLock { state -> Bool in
            defer { state.ended = true }
            return !state.ended
        }
        if first {
            self.onEnd(error, self.sentBytes.load(ordering: .relaxed), self.receivedBytes.load(ordering: .relaxed))
        }
    }

    /// The RPC is over for the transport (its closure returned, or threw `error`): the call's
    /// end is recorded, and a call still running is cancelled.
    func close(throwing error: (any Error)?) {
        let cancelled = RPCError(code: .cancelled, message: "the RPC was cancelled")
        let status = self.call.finishedStatus
        if let error {
            self.fail(cancelled)
            self.ended(
                status.map { $0.error ?? RPCError(transportFailure: error) } ?? RPCError(transportFailure: error)
            )
        } else if let status {
            self.ended(status.error)
        } else {
            self.fail(cancelled)
            self.ended(RPCError(code: .cancelled, message: "the RPC ended before its status arrived"))
        }
    }

    func fail(_ error: RPCError) {
        let waiters = self.state.withLock { state -> Resumption<StartWait> in
            switch state.phase {
            case .pending:
                state.phase = .failed(error)
                return state.starters.removeAll()
            case .started:
                self.call.cancel()
                return .none
            case .failed:
                return .none
            }
        }
        waiters.resume(returning: .ready)
    }
}

/// The request side of a streaming call (``CoreStream``, ``RetryingCoreStream``).
protocol StreamRequestSide: Sendable {
    func write(_ part: RPCRequestPart<[UInt8]>) async throws
    func finish() async
    func finish(throwing error: any Error)
}

extension CoreStream: StreamRequestSide {}

/// The request side of a streaming call as GRPCCore's closable writer.
struct StreamWriter<Stream: StreamRequestSide>: ClosableRPCWriterProtocol {
    typealias Element = RPCRequestPart<[UInt8]>
    let stream: Stream

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
    /// What a transport's closure threw, as the RPC's error.
    init(transportFailure error: any Error) {
        if let error = error as? RPCError {
            self = error
        } else if error is CancellationError {
            self = RPCError(code: .cancelled, message: "cancelled")
        } else {
            self = RPCError(code: .unknown, message: "\(error)", cause: error)
        }
    }

    /// How an RPC ends when its request stream fails: an `RPCError` from the request side
    /// (grpc-swift's own message size limit, say) is the RPC's outcome; any other error cancels it.
    init(requestStreamFailure error: any Error) {
        self =
            (error as? RPCError)
            ?? RPCError(code: .cancelled, message: "the request stream failed: \(error)", cause: error)
    }
}
