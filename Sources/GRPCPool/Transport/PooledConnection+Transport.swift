internal import GRPCCore
internal import GRPCPoolCoreBridge

extension PooledConnection {
    typealias TransportStream = RPCStream<
        RPCAsyncSequence<RPCResponsePart<[UInt8]>, any Error>, RPCWriter<RPCRequestPart<[UInt8]>>.Closable
    >

    /// Where a unary RPC's retry goes, waiting at most the given time: the pool's next pick, or
    /// the connection the caller holds.
    typealias RetryPick = @Sendable (_ timeLimit: Duration?) async -> CallSlot?

    /// Runs one RPC of a `ClientTransport` on this connection, and records it in the metrics.
    /// A unary RPC is retried here, under the service's retry policy, on the slot `retryPick`
    /// finds, unless the call brings its own execution policy (GRPCCore then retries it).
    func withStream<Result: Sendable>(
        descriptor: MethodDescriptor,
        options: CallOptions,
        in slot: CallSlot,
        retryPick: @escaping RetryPick,
        _ closure: (TransportStream, ClientContext) async throws -> Result
    ) async throws -> Result {
        let coreOptions = CoreCallOptions(
            timeout: options.timeout,
            waitForReady: options.waitForReady ?? false,
            compression: options.compression.flatMap(ChannelOptions.Compression.init) ?? self.config.callCompression,
            compressionThreshold: self.config.compressionThreshold
        )
        let maxRequest = options.maxRequestMessageBytes ?? self.config.maxSendMessageSize
        let maxResponse = options.maxResponseMessageBytes ?? self.config.maxReceiveMessageSize
        guard descriptor.type == .unary else {
            return try await self.withStreamingCall(
                descriptor: descriptor,
                options: coreOptions,
                in: slot,
                maxRequestBytes: maxRequest,
                maxResponseBytes: maxResponse,
                closure
            )
        }
        var retrier: UnaryCoreStream.Retrier?
        if self.config.enableRetries, options.executionPolicy == nil {
            let deadline = options.timeout.map { ContinuousClock.now.advanced(by: $0) }
            retrier = UnaryCoreStream.Retrier(
                retry: CallRetry(policy: self.config.retryPolicy, deadline: deadline),
                method: descriptor.path,
                options: coreOptions,
                pick: retryPick,
                clock: self.clock
            )
        }
        let first = UnaryCoreStream.Attempt(slot, method: descriptor.path, options: coreOptions)
        let context = ClientContext(descriptor: descriptor, remotePeer: first.started.peer, localPeer: "")
        let cancelled = RPCError(code: .cancelled, message: "the RPC was cancelled")
        let stream = UnaryCoreStream(
            first: first,
            retrier: retrier,
            maxRequestBytes: maxRequest,
            maxResponseBytes: maxResponse
        )
        defer { stream.close() }
        return try await withTaskCancellationHandler {
            try await closure(stream.transportStream(descriptor: descriptor), context)
        } onCancel: {
            stream.fail(cancelled)
        }
    }

    /// A streaming RPC (client, server or bidirectional) on one core call.
    private func withStreamingCall<Result: Sendable>(
        descriptor: MethodDescriptor,
        options: CoreCallOptions,
        in slot: CallSlot,
        maxRequestBytes: Int?,
        maxResponseBytes: Int?,
        _ closure: (TransportStream, ClientContext) async throws -> Result
    ) async throws -> Result {
        let started = self.beginCall(in: slot)
        let call: CoreCall
        do {
            call = try CoreCall.create(on: started.channel, method: descriptor.path, options: options)
        } catch {
            // The channel closed under the pick (a swap or a drain): a retry may pick another.
            self.endCall(started, error: error)
            return try await Refusal.run(error, final: false, descriptor: descriptor, peer: started.peer, closure)
        }
        let context = ClientContext(descriptor: descriptor, remotePeer: started.peer, localPeer: "")
        let stream = CoreStream(
            call: call,
            requestIsOneMessage: descriptor.type == .unary || descriptor.type == .serverStreaming,
            maxRequestBytes: maxRequestBytes,
            maxResponseBytes: maxResponseBytes
        ) {
            self.endCall(started, error: $0)
        }
        let cancelled = RPCError(code: .cancelled, message: "the RPC was cancelled")
        do {
            let result = try await withTaskCancellationHandler {
                try await closure(stream.transportStream(descriptor: descriptor), context)
            } onCancel: {
                stream.fail(cancelled)
            }
            if let status = call.finishedStatus {
                stream.ended(status.error)
            } else {
                stream.fail(cancelled)
                stream.ended(RPCError(code: .cancelled, message: "the RPC ended before its status arrived"))
            }
            return result
        } catch {
            stream.fail(cancelled)
            let status = call.finishedStatus
            stream.ended(status.map { $0.error ?? Self.rpcError(error) } ?? Self.rpcError(error))
            throw error
        }
    }

    static func rpcError(_ error: any Error) -> RPCError {
        if let error = error as? RPCError { return error }
        if error is CancellationError { return RPCError(code: .cancelled, message: "cancelled") }
        return RPCError(code: .unknown, message: "\(error)", cause: error)
    }
}

extension MethodDescriptor {
    /// The HTTP/2 path, `/package.Service/Method`, by concatenation (`fullyQualifiedMethod`
    /// interpolates the service descriptor through `description`, on every RPC).
    var path: String {
        let service = self.service.fullyQualifiedService
        var path = ""
        path.reserveCapacity(service.utf8.count + self.method.utf8.count + 2)
        path += "/"
        path += service
        path += "/"
        path += self.method
        return path
    }
}

extension ChannelOptions.Compression {
    init?(_ algorithm: CompressionAlgorithm) {
        switch algorithm {
        case .gzip: self = .gzip
        case .deflate: self = .deflate
        case .none: self = .none
        default: return nil
        }
    }
}

/// What GRPCCore applies to a service's methods: the message limits, `defaultCallTimeout`, and, with `enableRetries`,
/// the retry policy for the streaming kinds (GRPCCore buffers their requests for replay, each
/// attempt picking a connection again). Unary methods get no execution policy: the pool's
/// transports retry them themselves (``CallRetry``). Each transport builds them once: GRPCCore
/// asks on every RPC.
struct TransportMethodConfigs: Sendable {
    let unary: MethodConfig
    let streaming: MethodConfig

    init(_ config: PoolManager.ServiceConfig) {
        var executionPolicy: RPCExecutionPolicy?
        if config.enableRetries {
            let policy = config.retryPolicy
            executionPolicy = .retry(
                RetryPolicy(
                    maxAttempts: policy.maxAttempts,
                    initialBackoff: policy.initialBackoff,
                    maxBackoff: policy.maxBackoff,
                    backoffMultiplier: policy.backoffMultiplier,
                    retryableStatusCodes: Set(policy.retryableStatusCodes.compactMap(Status.Code.init(name:)))
                )
            )
        }
        self.unary = MethodConfig(
            names: [],
            timeout: config.defaultCallTimeout,
            maxRequestMessageBytes: config.maxSendMessageSize,
            maxResponseMessageBytes: config.maxReceiveMessageSize
        )
        self.streaming = MethodConfig(
            names: [],
            timeout: config.defaultCallTimeout,
            maxRequestMessageBytes: config.maxSendMessageSize,
            maxResponseMessageBytes: config.maxReceiveMessageSize,
            executionPolicy: executionPolicy
        )
    }

    func config(for descriptor: MethodDescriptor) -> MethodConfig {
        descriptor.type == .unary ? self.unary : self.streaming
    }
}

extension Status.Code {
    /// The code for its canonical name (`"UNAVAILABLE"`).
    init?(name: String) {
        let names = [
            "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
            "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
            "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
            "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
        ]
        guard let raw = names[name] else { return nil }
        self.init(rawValue: raw)
    }
}
