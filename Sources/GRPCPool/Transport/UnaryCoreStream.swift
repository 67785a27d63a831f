internal import GRPCCore
internal import GRPCPoolCoreBridge

/// A unary RPC of a `ClientTransport` stream: the request parts are collected, and when the
/// request ends the whole call goes out as one batch of six ops (the cheapest shape the core has).
final class UnaryCoreStream: Sendable {
    let call: CoreCall
    private let options: CoreCallOptions
    private let maxRequestBytes: Int?
    private let maxResponseBytes: Int?
    private let state: Locked<State>

    private struct State {
        var metadata: Metadata = [:]
        var message: [UInt8]?
        var result: Result<UnaryResponse, RPCError>?
        var waiters: [CheckedContinuation<Result<UnaryResponse, RPCError>, Never>] = []
        var started = false
    }

    init(call: CoreCall, options: CoreCallOptions, maxRequestBytes: Int?, maxResponseBytes: Int?) {
        self.call = call
        self.options = options
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
                self.complete(.failure(RPCError(code: .internalError, message: "a unary request has one message")))
            }
        }
    }

    func finish() {
        let request: (Metadata, [UInt8]?)? = self.state.withLock { state in
            guard !state.started, state.result == nil else { return nil }
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
            self.complete(.failure(error))
            return
        }
        self.call.startUnary(metadata: metadata, message: message, options: self.options) { result in
            self.complete(result)
        }
    }

    func fail(_ error: RPCError) {
        let started = self.state.withLock { $0.started }
        if started { self.call.cancel() } else { self.complete(.failure(error)) }
    }

    private func complete(_ result: Result<UnaryResponse, RPCError>) {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Result<UnaryResponse, RPCError>, Never>] in
            guard state.result == nil else { return [] }
            state.result = result
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }

    func result() async -> Result<UnaryResponse, RPCError> {
        await withCheckedContinuation { continuation in
            let result = self.state.withLock { state -> Result<UnaryResponse, RPCError>? in
                if let result = state.result { return result }
                state.waiters.append(continuation)
                return nil
            }
            if let result { continuation.resume(returning: result) }
        }
    }

    var finished: Bool { self.state.withLock { $0.result != nil } }

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
                    switch await self.stream.result() {
                    case .success(let response):
                        if let limit = self.stream.maxResponseBytes, response.message.count > limit {
                            let status = Status(
                                code: .resourceExhausted,
                                message:
                                    "response message of \(response.message.count) bytes exceeds the limit of \(limit) bytes"
                            )
                            self.pending = [.status(status, [:])]
                        } else {
                            self.pending = [
                                .metadata(response.initialMetadata),
                                .message(response.message),
                                .status(Status(code: .ok, message: ""), response.trailingMetadata),
                            ]
                        }
                    case .failure(let error):
                        self.pending = [
                            .status(Status(code: Status.Code(error.code), message: error.message), error.metadata)
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
