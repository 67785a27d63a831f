internal import GRPCCore
internal import GRPCPoolCoreBridge

/// The response side of a ``UnaryCoreStream``, its request writer, and how an attempt starts.
extension UnaryCoreStream {
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
                    self.pending = Self.parts(of: await self.stream.response(), stream: self.stream)
                }
                guard !self.pending!.isEmpty else { return nil }
                return self.pending!.removeFirst()
            }

            private static func parts(of outcome: UnaryOutcome, stream: UnaryCoreStream) -> [RPCResponsePart<[UInt8]>] {
                let status = outcome.status
                guard status.code == .ok, let message = outcome.message else {
                    return [.status(Status(code: status.code, message: status.text), status.trailingMetadata)]
                }
                if let limit = stream.maxResponseBytes, message.count > limit {
                    let exceeded = Status(
                        code: .resourceExhausted,
                        message: "response message of \(message.count) bytes exceeds the limit of \(limit) bytes"
                    )
                    return [.status(exceeded, [:])]
                }
                return [
                    .metadata(outcome.initialMetadata),
                    .message(message),
                    .status(Status(code: .ok, message: ""), status.trailingMetadata),
                ]
            }
        }
    }
}

extension UnaryCoreStream.Attempt {
    /// Starts a call in `slot`: its core call, or the reason it has none.
    init(_ slot: PooledConnection.CallSlot, method: String, options: CoreCallOptions, attempt: Int = 1) {
        self.connection = slot.connection
        self.started = slot.connection.beginCall(in: slot, path: method, attempt: attempt)
        do throws(RPCError) {
            self.call = .success(try CoreCall.create(on: self.started.channel, method: method, options: options))
        } catch {
            self.call = .failure(error)
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
