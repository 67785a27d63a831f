internal import GRPCCore
internal import GRPCPoolCoreBridge

extension PooledConnection {
    typealias TransportStream = RPCStream<
        RPCAsyncSequence<RPCResponsePart<[UInt8]>, any Error>, RPCWriter<RPCRequestPart<[UInt8]>>.Closable
    >

    /// Runs one RPC of a `ClientTransport` on this connection, and records it in the metrics.
    func withStream<Result: Sendable>(
        descriptor: MethodDescriptor,
        options: CallOptions,
        in slot: CallSlot,
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
        let started = self.beginCall(in: slot)
        let call: CoreCall
        do {
            call = try CoreCall.create(on: started.channel, method: descriptor.path, options: coreOptions)
        } catch {
            // The channel closed under the pick (a swap or a drain): a retry may pick another.
            self.endCall(started, error: error)
            return try await Refusal.run(error, final: false, descriptor: descriptor, peer: self.peer, closure)
        }
        let context = ClientContext(descriptor: descriptor, remotePeer: self.peer, localPeer: "")

        let (stream, abandon) = Self.stream(
            for: call,
            descriptor: descriptor,
            maxRequestBytes: maxRequest,
            maxResponseBytes: maxResponse
        )

        do {
            let result = try await withTaskCancellationHandler {
                try await closure(stream, context)
            } onCancel: {
                abandon()
            }
            if let status = call.finishedStatus {
                self.endCall(started, error: status.error)
            } else {
                abandon()
                self.endCall(
                    started,
                    error: RPCError(code: .cancelled, message: "the RPC ended before its status arrived")
                )
            }
            return result
        } catch {
            abandon()
            let status = call.finishedStatus
            self.endCall(started, error: status.map { $0.error ?? Self.rpcError(error) } ?? Self.rpcError(error))
            throw error
        }
    }

    /// The stream a `ClientTransport` hands its caller for `call`, and how to end it early:
    /// unary calls take the one-batch path, the other kinds the streaming one.
    private static func stream(
        for call: CoreCall,
        descriptor: MethodDescriptor,
        maxRequestBytes: Int?,
        maxResponseBytes: Int?
    ) -> (TransportStream, abandon: @Sendable () -> Void) {
        let kind: any TransportCoreStream.Type = descriptor.type == .unary ? UnaryCoreStream.self : CoreStream.self
        let stream = kind.init(
            call: call,
            maxRequestBytes: maxRequestBytes,
            maxResponseBytes: maxResponseBytes
        )
        let cancelled = RPCError(code: .cancelled, message: "the RPC was cancelled")
        return (stream.transportStream(descriptor: descriptor), { stream.fail(cancelled) })
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

extension PoolManager.ServiceConfig {
    /// The method config for every method of the service: message limits and, with
    /// `enableRetries`, the retry policy (which GRPCCore applies across connections, since each
    /// attempt picks a connection again). Each transport builds it once: GRPCCore asks for it on
    /// every RPC.
    var methodConfig: MethodConfig {
        var executionPolicy: RPCExecutionPolicy?
        if self.enableRetries {
            let policy = self.retryPolicy
            let codes = Set(policy.retryableStatusCodes.compactMap(Status.Code.init(name:)))
            executionPolicy = .retry(
                RetryPolicy(
                    maxAttempts: policy.maxAttempts,
                    initialBackoff: policy.initialBackoff,
                    maxBackoff: policy.maxBackoff,
                    backoffMultiplier: policy.backoffMultiplier,
                    retryableStatusCodes: codes
                )
            )
        }
        return MethodConfig(
            names: [],
            maxRequestMessageBytes: self.maxSendMessageSize,
            maxResponseMessageBytes: self.maxReceiveMessageSize,
            executionPolicy: executionPolicy
        )
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
