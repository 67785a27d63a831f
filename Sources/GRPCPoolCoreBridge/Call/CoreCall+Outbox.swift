internal import CGRPCCore
public import DequeModule

/// The request messages a call's writer has handed over ahead of the core. The core takes one
/// SEND_MESSAGE at a time; the next goes from the completion of the one before it, on the poller
/// thread, so a writer of many messages is not woken once per message. It waits only when
/// ``limit`` messages or ``byteLimit`` bytes are waiting: the back-pressure of the core's flow
/// control, one outbox later. A waiting writer goes on once the outbox has drained to half of
/// both bounds, not as soon as one message has left: a writer faster than the connection is
/// woken once per half an outbox, not once per message. The half-close follows the last message.
package struct Outbox: Sendable {
    static let limit = 64
    static let byteLimit = 1 << 20

    private var messages = Deque<(message: [UInt8], flags: UInt32)>()
    private var bytes = 0
    /// A SEND_MESSAGE or the half-close is in flight (the start batch's included).
    private(set) var sending = false
    /// The half-close waits for the messages before it.
    private var closeRequested = false

    enum Turn {
        /// Nothing is in flight: send it now.
        case start
        /// Queued: the send before it starts it.
        case queued
        /// No room: wait.
        case full
    }

    /// The next send in flight after one completed.
    enum Next {
        case message([UInt8], flags: UInt32)
        case close
        case idle
    }

    var hasRoom: Bool { self.messages.count < Self.limit && self.bytes < Self.byteLimit }

    /// Down to half of both bounds: a writer that waited for room goes on.
    var drained: Bool { self.messages.count <= Self.limit / 2 && self.bytes <= Self.byteLimit / 2 }

    mutating func markSending() {
        self.sending = true
    }

    mutating func offer(_ message: [UInt8], flags: UInt32) -> Turn {
        if !self.sending {
            self.sending = true
            return .start
        }
        guard self.hasRoom else { return .full }
        self.messages.append((message, flags))
        self.bytes += message.count
        return .queued
    }

    /// The half-close: now if nothing is in flight, else after the queued messages.
    mutating func close() -> Bool {
        if !self.sending {
            self.sending = true
            return true
        }
        self.closeRequested = true
        return false
    }

    mutating func sendCompleted() -> Next {
        if let (message, flags) = self.messages.popFirst() {
            self.bytes -= message.count
            // More follows at once (a message, or the half-close, which flushes): the core
            // keeps this one in the stream's write buffer and completes it without a write, so
            // that the messages queued here leave in one write instead of one each.
            let more = !self.messages.isEmpty || self.closeRequested
            return .message(message, flags: more ? flags | UInt32(GRPC_WRITE_BUFFER_HINT) : flags)
        }
        if self.closeRequested {
            self.closeRequested = false
            return .close
        }
        self.sending = false
        return .idle
    }
}

extension CoreCall {
    /// Sends one message after those before it: it returns once the outbox has it (at once
    /// while there is room), so at most the outbox's bound waits ahead of the core.
    ///
    /// - Returns: `false` when the task was cancelled while waiting for room.
    @discardableResult
    package func send(_ message: [UInt8]) async -> Bool {
        let flags = self.options.writeFlags(messageSize: message.count)
        while true {
            switch self.state.withLock({ $0.outbox.offer(message, flags: flags) }) {
            case .start:
                self.startSend(message, flags: flags)
                return true
            case .queued:
                return true
            case .full:
                let room = await self.state.wait(
                    in: \.senders,
                    until: { $0.outbox.hasRoom ? true : nil },
                    cancelled: false
                )
                guard room else { return false }
            }
        }
    }

    /// Half-closes the call after the messages written before it: the server sees the end of
    /// the request stream. Returns at once.
    package func closeSend() {
        if self.state.withLock({ $0.outbox.close() }) { self.startClose() }
    }

    private func startSend(_ message: [UInt8], flags: UInt32) {
        var op = grpc_op()
        op.op = GRPC_OP_SEND_MESSAGE
        op.flags = flags
        let buffer = ByteBuffers.make(message)
        op.data.send_message.send_message = buffer
        let rc = withUnsafePointer(to: op) { op in
            self.handle.startBatch(UnsafeBufferPointer(start: op, count: 1)) { _ in
                ByteBuffers.destroy(buffer)
                self.sendCompleted()
            }
        }
        if rc != GRPC_CALL_OK {
            ByteBuffers.destroy(buffer)
            self.sendCompleted()
        }
    }

    private func startClose() {
        var op = grpc_op()
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT
        let rc = withUnsafePointer(to: op) { op in
            self.handle.startBatch(UnsafeBufferPointer(start: op, count: 1)) { _ in self.sendCompleted() }
        }
        if rc != GRPC_CALL_OK { self.sendCompleted() }
    }

    /// A send in flight completed (or was refused): the next queued one goes, or the half-close,
    /// and writers waiting for room go on once the outbox has drained.
    func sendCompleted() {
        let (next, writers) = self.state.withLock { state in
            let next = state.outbox.sendCompleted()
            return (next, state.outbox.drained ? state.senders.removeAll() : .none)
        }
        writers.resume(returning: true)
        switch next {
        case .message(let message, let flags): self.startSend(message, flags: flags)
        case .close: self.startClose()
        case .idle: break
        }
    }
}
