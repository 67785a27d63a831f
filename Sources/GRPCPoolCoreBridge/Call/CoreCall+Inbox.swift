internal import CGRPCCore
public import DequeModule

/// The response messages a call has received ahead of its reader, so that a stream of messages
/// costs one core batch each, chained on the poller thread, and the reader is woken only when it
/// has run dry (not once per message). At most ``limit`` messages or ``byteLimit`` bytes wait: then
/// no receive is in flight, the core reads no further, and HTTP/2 flow control holds the server
/// back until the reader takes some.
package struct Inbox: Sendable {
    static let limit = 64
    static let byteLimit = 1 << 20

    private(set) var messages = Deque<[UInt8]>()
    private(set) var bytes = 0
    /// A RECV_MESSAGE is in flight.
    private(set) var receiving = false
    /// The response stream has ended: a RECV_MESSAGE returned no message.
    var ended = false

    package enum Delivery: Sendable {
        case message([UInt8])
        case end
    }

    /// The oldest message waiting, or the end; `nil` when the reader has to wait.
    mutating func take() -> Delivery? {
        if let message = self.messages.popFirst() {
            self.bytes -= message.count
            return .message(message)
        }
        return self.ended ? .end : nil
    }

    /// Whether to start the next RECV_MESSAGE now (none in flight, the stream not over, room
    /// left); marks it in flight.
    ///
    /// The chain of receives on the poller thread goes on while there is room at all; once it
    /// has stopped at the bounds, the reader starts it again only when it has taken the inbox
    /// down to half of both. A reader slower than the server then takes messages from memory
    /// while the poller thread receives half an inbox in a row, instead of the two taking turns
    /// message by message on two threads.
    mutating func startReceiving(resuming: Bool = false) -> Bool {
        guard !self.receiving, !self.ended else { return false }
        let room =
            resuming
            ? self.messages.count <= Self.limit / 2 && self.bytes <= Self.byteLimit / 2
            : self.messages.count < Self.limit && self.bytes < Self.byteLimit
        guard room else { return false }
        self.receiving = true
        return true
    }

    /// A RECV_MESSAGE completed with `message` (`nil`: the end) and nobody was waiting for it.
    mutating func received(_ message: [UInt8]?) {
        self.receiving = false
        guard let message else {
            self.ended = true
            return
        }
        self.messages.append(message)
        self.bytes += message.count
    }

    /// A RECV_MESSAGE completed and its message went straight to the waiting reader.
    mutating func handedOver() {
        self.receiving = false
    }
}

extension CoreCall {
    /// The next response message after the first (``receive()``), or `nil` at the end of the
    /// response stream or when the task is cancelled while it waits.
    package func receiveNext() async -> [UInt8]? {
        let (now, start) = self.state.withLock { state -> (Inbox.Delivery?, Bool) in
            let now = state.inbox.take()
            return (now, state.inbox.startReceiving(resuming: true))
        }
        if start { self.startReceive() }
        let delivery: Inbox.Delivery
        if let now {
            delivery = now
        } else {
            delivery = await self.state.wait(in: \.readers, until: { $0.inbox.take() }, cancelled: .end)
        }
        guard case .message(let message) = delivery else { return nil }
        return message
    }

    /// After the first message: the server has shown that it accepts the compression the call
    /// asked for; starts reading the next message ahead.
    func readAheadAfterFirstMessage() {
        let (start, requested) = self.state.withLock { ($0.inbox.startReceiving(), $0.requestedCompression) }
        self.handle.channel.compressionRefusals.learnAccepted(requested)
        if start { self.startReceive() }
    }

    /// Starts one RECV_MESSAGE (marked in flight by ``Inbox/startReceiving()``); its completion
    /// hands the message to the waiting reader or keeps it, and starts the next while there is room.
    private func startReceive() {
        let slot = UnsafeMutablePointer<UnsafeMutablePointer<grpc_byte_buffer>?>.allocate(capacity: 1)
        slot.initialize(to: nil)
        var op = grpc_op()
        op.op = GRPC_OP_RECV_MESSAGE
        op.data.recv_message.recv_message = slot
        let rc = withUnsafePointer(to: op) { op in
            self.handle.startBatch(UnsafeBufferPointer(start: op, count: 1)) { _ in
                let message = slot.pointee.map(ByteBuffers.take)
                slot.deallocate()
                self.receiveCompleted(message)
            }
        }
        if rc != GRPC_CALL_OK {
            slot.deallocate()
            self.receiveCompleted(nil)
        }
    }

    private func receiveCompleted(_ message: [UInt8]?) {
        let (reader, delivery, next) = self.state.withLock {
            state -> (Resumption<Inbox.Delivery>, Inbox.Delivery?, Bool) in
            if let message, !state.readers.isEmpty {
                state.inbox.handedOver()
                return (state.readers.removeFirst(), .message(message), state.inbox.startReceiving())
            }
            state.inbox.received(message)
            let readers = message == nil ? state.readers.removeAll() : Resumption<Inbox.Delivery>.none
            return (readers, .end, state.inbox.startReceiving())
        }
        if let delivery { reader.resume(returning: delivery) }
        if next { self.startReceive() }
    }
}
