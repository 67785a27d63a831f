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
    private let options: CoreCallOptions
    private let maxRequestBytes: Int?
    private let maxResponseBytes: Int?
    private let state: Locked<State>

    private enum State {
        /// Not on the wire yet: what was written so far, and readers waiting for the start.
        case pending(metadata: Metadata?, message: [UInt8]?, closed: Bool, waiters: [CheckedContinuation<Void, Never>])
        case started
        case failed(RPCError)
    }

    init(call: CoreCall, options: CoreCallOptions, maxRequestBytes: Int?, maxResponseBytes: Int?) {
        self.call = call
        self.options = options
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
                    _ = await self.call.send(
                        message,
                        compress: self.options.compression != ChannelOptions.Compression.none
                    )
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
    /// follows the start batch's own waits for it in ``CoreCall/send(_:compress:)``.
    func startIfPending(closing: Bool) {
        let waiters: [CheckedContinuation<Void, Never>] = self.state.withLock { state in
            guard case .pending(let metadata, let message, let closed, let waiters) = state else { return [] }
            do throws(RPCError) {
                try self.call.start(
                    metadata: metadata ?? [:],
                    options: self.options,
                    message: message,
                    compress: self.options.compression != ChannelOptions.Compression.none,
                    closeSend: closed || closing
                )
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

    // MARK: - Response side

    /// Waits until the call is on the wire (or failed). When the metadata and a message are
    /// already written, the reader starts the call itself (a bidirectional call that waits for
    /// its first response before it writes more).
    func waitForStart() async -> RPCError? {
        let ready: Bool = self.state.withLock { state in
            if case .pending = state { return false }
            return true
        }
        if !ready {
            // Give the writer a moment to finish the request, so it can go out in one batch.
            await Task.yield()
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                enum Next { case resume, wait, start }
                let next: Next = self.state.withLock { state in
                    guard case .pending(let metadata, let message, let closed, var waiters) = state else {
                        return .resume
                    }
                    // Checked under the same lock as the writer's: a message written just now
                    // either sees this waiter (and starts the call) or is seen here.
                    if metadata != nil && message != nil { return .start }
                    waiters.append(continuation)
                    state = .pending(metadata: metadata, message: message, closed: closed, waiters: waiters)
                    return .wait
                }
                switch next {
                case .resume:
                    continuation.resume()
                case .start:
                    self.startIfPending(closing: false)
                    continuation.resume()
                case .wait:
                    break
                }
            }
        }
        return self.state.withLock { state in
            if case .failed(let error) = state { return error }
            return nil
        }
    }

    /// The response parts, in order: metadata, messages, status.
    var responseParts: ResponseParts { ResponseParts(stream: self) }

    struct ResponseParts: AsyncSequence, Sendable {
        typealias Element = RPCResponsePart<[UInt8]>
        typealias Failure = any Error
        let stream: CoreStream

        func makeAsyncIterator() -> Iterator { Iterator(stream: self.stream) }

        struct Iterator: AsyncIteratorProtocol {
            let stream: CoreStream
            private var phase = Phase.metadata

            enum Phase {
                case metadata
                case firstMessage([UInt8])
                case messages
                case status
                case done
            }

            init(stream: CoreStream) {
                self.stream = stream
            }

            mutating func next() async throws -> RPCResponsePart<[UInt8]>? {
                switch self.phase {
                case .metadata:
                    if let error = await self.stream.waitForStart() {
                        self.phase = .done
                        return .status(Status(code: Status.Code(error.code), message: error.message), error.metadata)
                    }
                    let first = await self.stream.call.receive()
                    let metadata = await self.stream.call.initialMetadata()
                    if let first {
                        self.phase = .firstMessage(first)
                        return .metadata(metadata)
                    }
                    // No message: a trailers-only error, or an empty response stream.
                    let status = await self.stream.call.status()
                    if status.code != .ok && metadata.isEmpty {
                        self.phase = .done
                        return .status(Status(code: status.code, message: status.message), status.trailingMetadata)
                    }
                    self.phase = .status
                    return .metadata(metadata)
                case .firstMessage(let message):
                    self.phase = .messages
                    return try self.checked(message)
                case .messages:
                    if let message = await self.stream.call.receive() {
                        return try self.checked(message)
                    }
                    self.phase = .status
                    return try await self.next()
                case .status:
                    self.phase = .done
                    let status = await self.stream.call.status()
                    return .status(Status(code: status.code, message: status.message), status.trailingMetadata)
                case .done:
                    return nil
                }
            }

            private mutating func checked(_ message: [UInt8]) throws -> RPCResponsePart<[UInt8]> {
                if let limit = self.stream.maxResponseBytes, message.count > limit {
                    self.stream.call.cancel()
                    self.phase = .done
                    return .status(
                        Status(
                            code: .resourceExhausted,
                            message: "response message of \(message.count) bytes exceeds the limit of \(limit) bytes"
                        ),
                        [:]
                    )
                }
                return .message(message)
            }
        }
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
