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
        let retries = self.config.enableRetries && options.executionPolicy == nil
        let deadline = options.timeout.map { ContinuousClock.now.advanced(by: $0) }
        guard descriptor.type == .unary else {
            let shape = StreamShape(descriptor: descriptor, maxRequestBytes: maxRequest, maxResponseBytes: maxResponse)
            let retrier = retries ? self.streamRetrier(shape, options: coreOptions, deadline: deadline, retryPick) : nil
            return try await self.withStreamingCall(shape, options: coreOptions, in: slot, retrier: retrier, closure)
        }
        var retrier: UnaryCoreStream.Retrier?
        if retries {
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
        // `grpc.client.call.duration`: from the pick, through every attempt, to the status.
        let start = self.standardMetrics.enabled ? first.started.start - (slot.delay?.duration ?? .zero) : nil
        do {
            let result = try await withTaskCancellationHandler {
                try await closure(stream.transportStream(descriptor: descriptor), context)
            } onCancel: {
                stream.fail(cancelled)
            }
            self.callEnded(since: start, descriptor: descriptor, error: nil)
            return result
        } catch {
            self.callEnded(since: start, descriptor: descriptor, error: error)
            throw error
        }
    }

    /// Records a call that began at `start` (when the standard metrics are on) in
    /// `grpc.client.call.duration`, with the status of the error it ended with, or OK.
    private func callEnded(since start: ContinuousClock.Instant?, descriptor: MethodDescriptor, error: (any Error)?) {
        guard let start else { return }
        let status = error.map { ($0 as? RPCError).map { Status.Code($0.code) } ?? .unknown } ?? .ok
        self.standardMetrics.callEnded(method: descriptor.path, status: status, duration: .now - start)
    }

    /// What every attempt of a streaming RPC is made of.
    struct StreamShape: Sendable {
        let descriptor: MethodDescriptor
        let maxRequestBytes: Int?
        let maxResponseBytes: Int?
    }

    /// A streaming RPC (client, server or bidirectional) on a core call; with a `retrier`, the
    /// pool sends it again after a refusal (``RetryingCoreStream``).
    private func withStreamingCall<Result: Sendable>(
        _ shape: StreamShape,
        options: CoreCallOptions,
        in slot: CallSlot,
        retrier: RetryingCoreStream.Retrier?,
        _ closure: (TransportStream, ClientContext) async throws -> Result
    ) async throws -> Result {
        let start = self.standardMetrics.enabled ? ContinuousClock.now - (slot.delay?.duration ?? .zero) : nil
        let (first, peer) = self.openStream(shape, options: options, in: slot)
        let context = ClientContext(descriptor: shape.descriptor, remotePeer: peer, localPeer: "")
        do {
            let result = try await self.runStreamingCall(first, shape, context: context, retrier: retrier, closure)
            self.callEnded(since: start, descriptor: shape.descriptor, error: nil)
            return result
        } catch {
            self.callEnded(since: start, descriptor: shape.descriptor, error: error)
            throw error
        }
    }

    private func runStreamingCall<Output: Sendable>(
        _ first: Result<CoreStream, RPCError>,
        _ shape: StreamShape,
        context: ClientContext,
        retrier: RetryingCoreStream.Retrier?,
        _ closure: (TransportStream, ClientContext) async throws -> Output
    ) async throws -> Output {
        let peer = context.remotePeer
        if let retrier {
            let stream = RetryingCoreStream(first: first, retrier: retrier)
            return try await Self.run(stream, descriptor: shape.descriptor, context: context, closure)
        }
        switch first {
        case .success(let stream):
            return try await Self.run(stream, descriptor: shape.descriptor, context: context, closure)
        case .failure(let error):
            // The channel closed under the pick (a swap or a drain): GRPCCore's own retry
            // policy, if the call brings one, may pick another.
            return try await Refusal.run(error, final: false, descriptor: shape.descriptor, peer: peer, closure)
        }
    }

    /// Starts a call in `slot`, its end recorded on this connection as it ends; a channel that
    /// closed under the pick fails the attempt at once. The peer is the `ClientContext`'s.
    func openStream(
        _ shape: StreamShape,
        options: CoreCallOptions,
        in slot: CallSlot,
        attempt: Int = 1
    ) -> (stream: Result<CoreStream, RPCError>, peer: String) {
        let path = shape.descriptor.path
        let started = self.beginCall(in: slot, path: path, attempt: attempt)
        do throws(RPCError) {
            let call = try CoreCall.create(on: started.channel, method: path, options: options)
            let stream = CoreStream(
                call: call,
                trace: started.trace,
                requestIsOneMessage: shape.descriptor.type == .unary || shape.descriptor.type == .serverStreaming,
                maxRequestBytes: shape.maxRequestBytes,
                maxResponseBytes: shape.maxResponseBytes
            ) {
                self.endCall(started, error: $0, sent: $1, received: $2)
            }
            return (.success(stream), started.peer)
        } catch {
            self.endCall(started, error: error)
            return (.failure(error), started.peer)
        }
    }

    /// The retries of a streaming RPC: each attempt on the slot `retryPick` finds, with the time
    /// left before `deadline`.
    private func streamRetrier(
        _ shape: StreamShape,
        options: CoreCallOptions,
        deadline: ContinuousClock.Instant?,
        _ retryPick: @escaping RetryPick
    ) -> RetryingCoreStream.Retrier {
        RetryingCoreStream.Retrier(
            retry: CallRetry(policy: self.config.retryPolicy, deadline: deadline),
            pick: retryPick,
            open: { slot, timeout, attempt in
                var options = options
                options.timeout = timeout
                return slot.connection.openStream(shape, options: options, in: slot, attempt: attempt).stream
            },
            clock: self.clock
        )
    }

    /// Runs the transport's closure on `stream`; the RPC's end is recorded as it returns or throws.
    private static func run<Stream: TransportCoreStream, Result: Sendable>(
        _ stream: Stream,
        descriptor: MethodDescriptor,
        context: ClientContext,
        _ closure: (TransportStream, ClientContext) async throws -> Result
    ) async throws -> Result {
        let cancelled = RPCError(code: .cancelled, message: "the RPC was cancelled")
        do {
            let result = try await withTaskCancellationHandler {
                try await closure(stream.transportStream(descriptor: descriptor), context)
            } onCancel: {
                stream.fail(cancelled)
            }
            stream.close(throwing: nil)
            return result
        } catch {
            stream.close(throwing: error)
            throw error
        }
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

/// What GRPCCore applies to a service's methods: the message limits and `defaultCallTimeout`.
/// No execution policy: with `enableRetries` the pool's transports retry every kind of RPC
/// themselves (``CallRetry``; ``RetryingCoreStream`` for the streaming kinds), each attempt
/// picking a connection again. Built once: GRPCCore asks on every RPC.
struct TransportMethodConfigs: Sendable {
    let all: MethodConfig

    init(_ config: PoolManager.ServiceConfig) {
        self.all = MethodConfig(
            names: [],
            timeout: config.defaultCallTimeout,
            maxRequestMessageBytes: config.maxSendMessageSize,
            maxResponseMessageBytes: config.maxReceiveMessageSize
        )
    }

    func config(for descriptor: MethodDescriptor) -> MethodConfig { self.all }
}

extension Status.Code {
    /// The canonical names, by raw value (`"OK"` is 0).
    private static let names = [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
        "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
    ]

    /// The code for its canonical name (`"UNAVAILABLE"`); not OK, which no retry policy names.
    init?(name: String) {
        guard let raw = Self.names.firstIndex(of: name), raw > 0 else { return nil }
        self.init(rawValue: raw)
    }

    /// The canonical name, as `grpc.status` carries it (`"UNAVAILABLE"`).
    var name: String { Self.names.indices.contains(self.rawValue) ? Self.names[self.rawValue] : "UNKNOWN" }
}
