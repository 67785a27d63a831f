internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Synchronization

/// The response side of a ``CoreStream``.
extension CoreStream {
    /// Waits until the call is on the wire (or failed). When enough of the request is written
    /// (the metadata, and the message of a call that has exactly one), the reader starts the call
    /// itself: a client may wait for a response before it writes more, or before it writes at all.
    func waitForStart() async -> RPCError? {
        let pending: Bool = self.state.withLock { state in
            if case .pending = state.phase { return true }
            return false
        }
        if pending {
            // Give the writer a moment to finish the request, so it can go out in one batch.
            await Task.yield()
            let next = await self.state.wait(
                in: \.starters,
                until: { state in
                    guard case .pending = state.phase else { return .ready }
                    // Checked under the same lock as the writer's: a part written just now
                    // either sees this waiter (and starts the call) or is seen here.
                    return state.readerStarts(self.requestIsOneMessage) ? .start : nil
                },
                cancelled: .cancelled
            )
            switch next {
            case .ready:
                break
            case .start:
                self.startIfPending(closing: false)
            case .cancelled:
                self.fail(RPCError(code: .cancelled, message: "the RPC was cancelled"))
            }
        }
        return self.state.withLock { state in
            if case .failed(let error) = state.phase { return error }
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
                        self.stream.ended(error)
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
                        self.stream.ended(status.error)
                        return .status(Status(code: status.code, message: status.message), status.trailingMetadata)
                    }
                    self.phase = .status
                    return .metadata(metadata)
                case .firstMessage(let message):
                    self.phase = .messages
                    return try self.checked(message)
                case .messages:
                    if let message = await self.stream.call.receiveNext() {
                        return try self.checked(message)
                    }
                    self.phase = .status
                    return try await self.next()
                case .status:
                    self.phase = .done
                    let status = await self.stream.call.status()
                    self.stream.ended(status.error)
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
                self.stream.receivedBytes.add(message.count, ordering: .relaxed)
                return .message(message)
            }
        }
    }
}
