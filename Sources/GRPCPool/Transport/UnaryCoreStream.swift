internal import GRPCCore
internal import GRPCPoolCoreBridge

/// A unary RPC of a `ClientTransport` stream: the request parts are collected, and when the
/// request ends the whole call goes out as one batch of six ops (the cheapest shape the core has).
final class UnaryCoreStream: Sendable {
    let call: CoreCall
    private let maxRequestBytes: Int?
    private let maxResponseBytes: Int?
    private let state: Locked<State>

    private struct State {
        var metadata: Metadata = [:]
        var message: [UInt8]?
        var outcome: UnaryOutcome?
        var waiters: [CheckedContinuation<UnaryOutcome, Never>] = []
        var started = false
    }

    init(call: CoreCall, maxRequestBytes: Int?, maxResponseBytes: Int?) {
        self.call = call
        self.maxRequestBytes = maxRequestBytes
        self.maxResponseBytes = maxResponseBytes
        self.state = Locked(State())
    }

    func write(_ part: RPCRequestPart<[UInt8]>) throws {
        switch part {
        case .metadata(let metadata):
            self.state.withLock { $0.metadata = metadata }
        case .message(let message):
            if let limit = self.maxRequestBytes, message.count > limit {
                throw RPCError(
                    code: .resourceExhausted,
                    message: "request message of \(message.count) bytes exceeds the limit of \(limit) bytes"
                )
            }
            let duplicate = self.state.withLock { state -> Bool in
                defer { state.message = message }
                return state.message != nil
            }
            if duplicate {
                self.complete(
                    UnaryOutcome(failure: RPCError(code: .internalError, message: "a unary request has one message"))
                )
            }
        }
    }

    func finish() {
        let request: (Metadata, [UInt8]?)? = self.state.withLock { state in
            guard !state.started, state.outcome == nil else { return nil }
            state.started = true
            return (state.metadata, state.message)
        }
        guard let (metadata, message) = request else { return }
        guard let message else {
            // Never send a unary request without its message: the server would answer an empty one.
            // A request writer that was cancelled ends that way (GRPCCore's replay buffer ends the
            // sequence for a cancelled subscriber): that is a cancellation, not a protocol error.
            let error =
                Task.isCancelled
                ? RPCError(code: .cancelled, message: "the unary request was cancelled before its message was written")
                : RPCError(code: .internalError, message: "the unary request ended without a message")
            self.complete(UnaryOutcome(failure: error))
            return
        }
        self.call.startUnary(metadata: metadata, message: message) { outcome in
            self.complete(outcome)
        }
    }

    func fail(_ error: RPCError) {
        let started = self.state.withLock { $0.started }
        if started { self.call.cancel() } else { self.complete(UnaryOutcome(failure: error)) }
    }

    private func complete(_ outcome: UnaryOutcome) {
        let waiters = self.state.withLock { state -> [CheckedContinuation<UnaryOutcome, Never>] in
            guard state.outcome == nil else { return [] }
            state.outcome = outcome
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }

    func outcome() async -> UnaryOutcome {
        await withCheckedContinuation { continuation in
            let outcome = self.state.withLock { state -> UnaryOutcome? in
                if let outcome = state.outcome { return outcome }
                state.waiters.append(continuation)
                return nil
            }
            if let outcome { continuation.resume(returning: outcome) }
        }
    }

    var finished: Bool { self.state.withLock { $0.outcome != nil } }

    /// The response as parts: metadata, message, status; or the status alone for an error.
    var responseParts: ResponseParts { ResponseParts(stream: self) }

    struct ResponseParts: AsyncSequence, Sendable {
        typealias Element = RPCResponsePart<[UInt8]>
        typealias Failure = any Error
        let stream: UnaryCoreStream

        func makeAsyncIterator() -> Iterator { Iterator(stream: self.stream) }

        struct Iterator: AsyncIteratorProtocol {
            let stream: UnaryCoreStream
            private var pending: [RPCResponsePart<[UInt8]>]?

            init(stream: UnaryCoreStream) {
                self.stream = stream
            }

            mutating func next() async throws -> RPCResponsePart<[UInt8]>? {
                if self.pending == nil {
                    let outcome = await self.stream.outcome()
                    let status = outcome.status
                    if status.code == .ok, let message = outcome.message {
                        if let limit = self.stream.maxResponseBytes, message.count > limit {
                            let exceeded = Status(
                                code: .resourceExhausted,
                                message:
                                    "response message of \(message.count) bytes exceeds the limit of \(limit) bytes"
                            )
                            self.pending = [.status(exceeded, [:])]
                        } else {
                            self.pending = [
                                .metadata(outcome.initialMetadata),
                                .message(message),
                                .status(Status(code: .ok, message: ""), status.trailingMetadata),
                            ]
                        }
                    } else {
                        self.pending = [
                            .status(Status(code: status.code, message: status.text), status.trailingMetadata)
                        ]
                    }
                }
                guard !self.pending!.isEmpty else { return nil }
                return self.pending!.removeFirst()
            }
        }
    }
}

/// The request side of a ``UnaryCoreStream``.
struct UnaryCoreStreamWriter: ClosableRPCWriterProtocol {
    typealias Element = RPCRequestPart<[UInt8]>
    let stream: UnaryCoreStream

    func write(_ element: RPCRequestPart<[UInt8]>) async throws {
        try self.stream.write(element)
    }

    func write(contentsOf elements: some Sequence<RPCRequestPart<[UInt8]>>) async throws {
        for element in elements { try self.stream.write(element) }
    }

    func finish() async {
        self.stream.finish()
    }

    func finish(throwing error: any Error) async {
        self.stream.fail(RPCError(requestStreamFailure: error))
    }
}
