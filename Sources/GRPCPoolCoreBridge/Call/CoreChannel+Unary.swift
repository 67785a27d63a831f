internal import CGRPCCore
package import GRPCCore

/// The response of a unary call.
package struct UnaryResponse: Sendable {
    package var initialMetadata: Metadata
    package var message: [UInt8]
    package var trailingMetadata: Metadata
}

/// What a unary call came back with: its status, read once from the core's status slots (or
/// made for a failure before the call went out), and the metadata and message the server sent.
/// Each consumer takes what it needs from it: the call's finished status, an `RPCError`, or the
/// parts of a `ClientTransport` stream.
package struct UnaryOutcome: Sendable {
    package var initialMetadata: Metadata
    package var message: [UInt8]?
    /// The status the caller sees: the server's, or INTERNAL for an OK that came without a message.
    package var status: CallStatus
    /// The server refused the compression the call asked for (UNIMPLEMENTED with the encodings
    /// it accepts), before any handler saw the call; the channel has remembered it.
    package var compressionRefused = false

    init(initialMetadata: Metadata, message: [UInt8]?, status: CallStatus) {
        self.initialMetadata = initialMetadata
        self.message = message
        self.status = status
        if status.code == .ok && message == nil {
            self.status = CallStatus(
                code: .internalError,
                message: "the server ended a unary call with OK but sent no message",
                trailingMetadata: status.trailingMetadata
            )
        }
    }

    /// A call that failed with `error` on this side.
    package init(failure error: RPCError) {
        self.initialMetadata = [:]
        self.message = nil
        self.status = CallStatus(
            code: Status.Code(error.code),
            message: error.message,
            trailingMetadata: error.metadata
        )
    }

    /// The response, or the status as an error.
    package var result: Result<UnaryResponse, RPCError> {
        if let error = self.status.error { return .failure(error) }
        return .success(
            UnaryResponse(
                initialMetadata: self.initialMetadata,
                message: self.message ?? [],
                trailingMetadata: self.status.trailingMetadata
            )
        )
    }
}

extension CoreChannel {
    /// Makes a unary call as one batch of six ops (the cheapest shape the core offers).
    ///
    /// Cancelling the calling task cancels the call on the wire.
    ///
    /// - Throws: `RPCError` with the server's status, message and trailing metadata, or
    ///   `.unavailable` when the channel is closed.
    package func unary(
        method: String,
        request: [UInt8],
        metadata: Metadata = [:],
        options: CoreCallOptions = CoreCallOptions()
    ) async throws(RPCError) -> UnaryResponse {
        guard
            let call = self.handle.createCall(method: method, authority: options.authority, deadline: options.deadline)
        else {
            throw RPCError(code: .unavailable, message: "channel to \(self.target) is closed")
        }
        let outcome = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<UnaryOutcome, Never>) in
                UnaryBatch.start(on: call, request: request, metadata: metadata, options: options) {
                    continuation.resume(returning: $0)
                }
            }
        } onCancel: {
            call.cancel()
        }
        return try outcome.result.get()
    }
}

extension CoreCall {
    /// Sends a whole unary request and receives the whole response in one batch of six ops.
    /// `completion` runs on the poller with the outcome, which is the call's status too: nobody
    /// waits on ``status()`` for a unary call, so it is not stored there.
    ///
    /// When the server refuses the call's compression (it never reached a handler), the request
    /// goes again at once, uncompressed, on a new call to the same channel with the same deadline;
    /// the channel's later calls ask for no compression.
    package func startUnary(
        metadata: Metadata,
        message: [UInt8],
        completion: @escaping @Sendable (UnaryOutcome) -> Void
    ) {
        UnaryBatch.start(on: self.handle, request: message, metadata: metadata, options: self.options) { outcome in
            guard outcome.compressionRefused, let again = self.resendHandle() else { return completion(outcome) }
            UnaryBatch.start(
                on: again,
                request: message,
                metadata: metadata,
                options: self.options,
                completion: completion
            )
        }
    }

    /// A new call to the same channel, method and deadline, cancelled with this one.
    private func resendHandle() -> CallHandle? {
        let authority = self.options.authority
        guard
            let again = self.handle.channel.createCall(
                method: self.method,
                authority: authority,
                deadline: self.deadline
            )
        else { return nil }
        let cancelled = self.state.withLock { state in
            state.resent = again
            return state.cancelled
        }
        if cancelled { again.cancel() }
        return again
    }
}

/// The slots of a unary batch, allocated once and freed when the batch completes.
struct UnaryBatch {
    var status = StatusSlots()
    var initialMetadata = grpc_metadata_array()
    var message: UnsafeMutablePointer<grpc_byte_buffer>? = nil

    static func start(
        on call: CallHandle,
        request: [UInt8],
        metadata: Metadata,
        options: CoreCallOptions,
        completion: @escaping (UnaryOutcome) -> Void
    ) {
        let slots = UnsafeMutablePointer<UnaryBatch>.allocate(capacity: 1)
        slots.initialize(to: UnaryBatch())
        StatusSlots.initialize(slots.pointer(to: \.status)!)
        grpc_metadata_array_init(slots.pointer(to: \.initialMetadata)!)
        let refusals = call.channel.compressionRefusals
        let compression = options.requestedCompression(unaryRequestSize: request.count, refusals: refusals)
        let outbound = OutboundMetadata(metadata, extra: CoreCallOptions.internalMetadata(requesting: compression))
        let requestBuffer = ByteBuffers.make(request)

        var ops = [grpc_op](repeating: grpc_op(), count: 6)
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA
        ops[0].flags = options.initialMetadataFlags
        ops[0].data.send_initial_metadata.count = outbound.count
        ops[0].data.send_initial_metadata.metadata = outbound.elements
        ops[1].op = GRPC_OP_SEND_MESSAGE
        ops[1].flags = options.writeFlags(messageSize: request.count)
        ops[1].data.send_message.send_message = requestBuffer
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA
        ops[3].data.recv_initial_metadata.recv_initial_metadata = slots.pointer(to: \.initialMetadata)!
        ops[4].op = GRPC_OP_RECV_MESSAGE
        ops[4].data.recv_message.recv_message = slots.pointer(to: \.message)!
        ops[5] = StatusSlots.op(slots.pointer(to: \.status)!)

        let rc = ops.withUnsafeBufferPointer { ops in
            call.startBatch(ops) { _ in
                withExtendedLifetime(outbound) {}
                ByteBuffers.destroy(requestBuffer)
                var outcome = Self.finish(slots, target: call.target)
                outcome.compressionRefused = refusals.learn(from: outcome.status, requested: compression)
                completion(outcome)
            }
        }
        if rc != GRPC_CALL_OK {
            ByteBuffers.destroy(requestBuffer)
            StatusSlots.discard(slots.pointer(to: \.status)!)
            grpc_metadata_array_destroy(slots.pointer(to: \.initialMetadata)!)
            slots.deinitialize(count: 1)
            slots.deallocate()
            completion(UnaryOutcome(failure: rc.rpcError))
        }
    }

    /// Copies the outcome out of the slots and frees them.
    private static func finish(_ slots: UnsafeMutablePointer<UnaryBatch>, target: String) -> UnaryOutcome {
        let status = StatusSlots.take(slots.pointer(to: \.status)!, target: target)
        let initialMetadata = Metadata(copying: slots.pointee.initialMetadata)
        grpc_metadata_array_destroy(slots.pointer(to: \.initialMetadata)!)
        let message = slots.pointee.message.map(ByteBuffers.take)
        slots.deinitialize(count: 1)
        slots.deallocate()
        return UnaryOutcome(initialMetadata: initialMetadata, message: message, status: status)
    }
}
