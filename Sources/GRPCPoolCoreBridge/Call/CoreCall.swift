internal import CGRPCCore
package import GRPCCore

/// A streaming call on raw bytes: one batch per step (primer §4).
///
/// Use it inside ``CoreChannel/withCall(method:metadata:options:_:)``, which cancels the call when
/// the task is cancelled or the body leaves before the call finished. The four shapes:
///
/// - server streaming: ``send(_:)`` once, ``closeSend()``, ``receive()`` until `nil`, ``status()``;
/// - client streaming: ``send(_:)`` many times, ``closeSend()``, ``receive()`` once, ``status()``;
/// - bidirectional: a writer and a reader at once (send-side and receive-side batches may overlap).
///
/// The core allows one SEND_MESSAGE in flight per call: ``send(_:)`` queues behind the one in
/// flight (the start batch's message included) in the call's ``Outbox``, and the response's
/// messages are read ahead into its ``Inbox``; one reader at a time. Each message is compressed
/// or not by the call's options (``CoreCallOptions/compressionThreshold``).
package final class CoreCall: Sendable {
    let handle: CallHandle
    let options: CoreCallOptions
    /// The method and the deadline it was created with (a unary call the server refused for its
    /// compression is sent again with them).
    let method: String
    let deadline: gpr_timespec
    let state: Locked<State>

    struct State {
        /// The compression algorithm the call asked for (``CoreCallOptions/requestedCompression(unaryRequestSize:requestStaysOpen:refusals:)``).
        var requestedCompression: ChannelOptions.Compression?
        /// A unary call sent again (``startUnary(metadata:message:completion:)``): cancelled with this one.
        var resent: CallHandle?
        var cancelled = false
        var initialMetadataRequested = false
        var initialMetadata: Metadata?
        var status: CallStatus?
        var statusWaiters = WaiterQueue<CallStatus>()
        /// The request messages written ahead of the core, and the send in flight.
        var outbox = Outbox()
        /// Writers waiting for room in the outbox.
        var senders = WaiterQueue<Bool>()
        /// The response messages received ahead of the reader (``receiveNext()``).
        var inbox = Inbox()
        /// The reader waiting for the next message.
        var readers = WaiterQueue<Inbox.Delivery>()
    }

    private init(handle: CallHandle, options: CoreCallOptions, method: String, deadline: gpr_timespec) {
        self.handle = handle
        self.options = options
        self.method = method
        self.deadline = deadline
        self.state = Locked(State())
    }

    /// Creates the call, sends its initial metadata and starts waiting for its status.
    static func start(
        on channel: CoreChannel,
        method: String,
        metadata: Metadata,
        options: CoreCallOptions
    ) throws(RPCError) -> CoreCall {
        let call = try Self.create(on: channel, method: method, options: options)
        try call.start(metadata: metadata)
        return call
    }

    /// Creates the call with `options`; nothing goes on the wire until ``start(metadata:message:closeSend:)``.
    ///
    /// - Throws: `.unavailable` when the channel is closed.
    package static func create(
        on channel: CoreChannel,
        method: String,
        options: CoreCallOptions
    ) throws(RPCError) -> CoreCall {
        let deadline = options.deadline
        guard let handle = channel.handle.createCall(method: method, authority: options.authority, deadline: deadline)
        else {
            throw RPCError(code: .unavailable, message: "channel to \(channel.target) is closed")
        }
        return CoreCall(handle: handle, options: options, method: method, deadline: deadline)
    }

    /// Starts the call in one batch: the initial metadata, optionally the first message, and
    /// optionally the half-close (a unary or server-streaming request then costs one batch);
    /// and starts waiting for the status.
    ///
    /// - Throws: the core's refusal, e.g. `.invalidArgument` for illegal metadata.
    package func start(
        metadata: Metadata,
        message: [UInt8]? = nil,
        closeSend: Bool = false
    ) throws(RPCError) {
        let options = self.options
        let compression = options.requestedCompression(
            requestStaysOpen: !closeSend,
            refusals: self.handle.channel.compressionRefusals
        )
        self.state.withLock { $0.requestedCompression = compression }
        let outbound = OutboundMetadata(metadata, extra: CoreCallOptions.internalMetadata(requesting: compression))
        let buffer = message.map(ByteBuffers.make)
        var ops = [grpc_op]()
        ops.reserveCapacity(3)
        var start = grpc_op()
        start.op = GRPC_OP_SEND_INITIAL_METADATA
        start.flags = options.initialMetadataFlags
        start.data.send_initial_metadata.count = outbound.count
        start.data.send_initial_metadata.metadata = outbound.elements
        ops.append(start)
        if let buffer {
            var send = grpc_op()
            send.op = GRPC_OP_SEND_MESSAGE
            send.flags = options.writeFlags(messageSize: message?.count ?? 0)
            send.data.send_message.send_message = buffer
            ops.append(send)
        }
        if closeSend {
            var close = grpc_op()
            close.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT
            ops.append(close)
        }
        if buffer != nil { self.state.withLock { $0.outbox.markSending() } }
        let rc = ops.withUnsafeBufferPointer { ops in
            self.handle.startBatch(ops) { _ in
                withExtendedLifetime(outbound) {}
                if let buffer {
                    ByteBuffers.destroy(buffer)
                    self.sendCompleted()
                }
            }
        }
        guard rc == GRPC_CALL_OK else {
            if let buffer {
                ByteBuffers.destroy(buffer)
                self.sendCompleted()
            }
            throw rc.rpcError
        }

        let slots = UnsafeMutablePointer<StatusSlots>.allocate(capacity: 1)
        StatusSlots.initialize(slots)
        let statusOp = StatusSlots.op(slots)
        let statusRC = withUnsafePointer(to: statusOp) { op in
            self.handle.startBatch(UnsafeBufferPointer(start: op, count: 1)) { _ in
                var status = StatusSlots.take(slots, target: self.handle.target)
                slots.deinitialize(count: 1)
                slots.deallocate()
                if self.handle.channel.compressionRefusals.learn(from: status, requested: compression) {
                    status = CompressionRefusals.retryable(status, requested: compression)
                }
                self.statusReceived(status)
            }
        }
        guard statusRC == GRPC_CALL_OK else {
            StatusSlots.discard(slots)
            slots.deinitialize(count: 1)
            slots.deallocate()
            self.handle.cancel()
            throw statusRC.rpcError
        }
    }

    /// The first message comes with the initial metadata, in one batch, unless
    /// ``initialMetadata()`` came first; the next ones through ``receiveNext()``, which reads ahead.
    package func receive() async -> [UInt8]? {
        guard self.claimInitialMetadata() else { return await self.receiveNext() }
        let slot = UnsafeMutablePointer<UnsafeMutablePointer<grpc_byte_buffer>?>.allocate(capacity: 1)
        slot.initialize(to: nil)
        defer { slot.deallocate() }
        var message = grpc_op()
        message.op = GRPC_OP_RECV_MESSAGE
        message.data.recv_message.recv_message = slot
        _ = await self.receiveInitialMetadata(along: message)
        let first = slot.pointee.map(ByteBuffers.take)
        if first == nil {
            self.state.withLock { $0.inbox.ended = true }
        } else {
            self.readAheadAfterFirstMessage()
        }
        return first
    }

    /// The server's initial metadata (empty if the call ended without any).
    package func initialMetadata() async -> Metadata {
        if self.claimInitialMetadata() {
            return await self.receiveInitialMetadata(along: nil)
        }
        return self.state.withLock { $0.initialMetadata } ?? [:]
    }

    /// Whether this caller is the one to add RECV_INITIAL_METADATA (the core takes it once).
    private func claimInitialMetadata() -> Bool {
        self.state.withLock { state in
            defer { state.initialMetadataRequested = true }
            return !state.initialMetadataRequested
        }
    }

    /// Runs RECV_INITIAL_METADATA, with `op` in the same batch, and keeps what arrived.
    private func receiveInitialMetadata(along op: grpc_op?) async -> Metadata {
        let array = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
        grpc_metadata_array_init(array)
        defer {
            grpc_metadata_array_destroy(array)
            array.deallocate()
        }
        var metadata = grpc_op()
        metadata.op = GRPC_OP_RECV_INITIAL_METADATA
        metadata.data.recv_initial_metadata.recv_initial_metadata = array
        if let op {
            _ = await self.run(metadata, op)
        } else {
            _ = await self.run(metadata)
        }
        let received = Metadata(copying: array.pointee)
        self.state.withLock { $0.initialMetadata = received }
        return received
    }

    /// Waits for the end of the call; CANCELLED when the task is cancelled first.
    package func status() async -> CallStatus {
        await self.state.wait(
            in: \.statusWaiters,
            until: { $0.status },
            cancelled: CallStatus(
                code: .cancelled,
                message: "cancelled while waiting for the call's end",
                trailingMetadata: [:]
            )
        )
    }

    /// The status, if the call has ended.
    package var finishedStatus: CallStatus? {
        self.state.withLock { $0.status }
    }

    /// Cancels the call (thread-safe); the server observes RST_STREAM.
    package func cancel() {
        let resent = self.state.withLock { state in
            state.cancelled = true
            return state.resent
        }
        self.handle.cancel()
        resent?.cancel()
    }

    func statusReceived(_ status: CallStatus) {
        self.state.withLock { state in
            state.status = status
            return state.statusWaiters.removeAll()
        }.resume(returning: status)
    }

    /// Runs one batch and waits for it; `false` when it failed or the core refused it.
    private func run(_ ops: grpc_op...) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let rc = ops.withUnsafeBufferPointer { buffer in
                self.handle.startBatch(buffer) { ok in continuation.resume(returning: ok) }
            }
            if rc != GRPC_CALL_OK { continuation.resume(returning: false) }
        }
    }
}

extension CoreChannel {
    /// Runs `body` with a started streaming call.
    ///
    /// Cancelling the task cancels the call; if `body` returns or throws before the call has
    /// ended, the call is cancelled so that nothing is left running on the server.
    package func withCall<Result>(
        method: String,
        metadata: Metadata = [:],
        options: CoreCallOptions = CoreCallOptions(),
        _ body: (CoreCall) async throws -> Result
    ) async throws -> Result {
        let call = try CoreCall.start(on: self, method: method, metadata: metadata, options: options)
        return try await withTaskCancellationHandler {
            defer {
                if call.finishedStatus == nil { call.cancel() }
            }
            return try await body(call)
        } onCancel: {
            call.cancel()
        }
    }
}
