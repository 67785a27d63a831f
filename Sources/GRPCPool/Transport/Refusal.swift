internal import GRPCCore

/// How the pool's transports refuse an RPC that never reaches a connection: none is healthy
/// under `.failFast`, the queue of waiting calls is full, the pool is shutting down.
///
/// `withStream` does not throw the refusal: grpc-swift's retrying executor keeps its deadline
/// timer running when `withStream` throws, so a thrown refusal would reach the caller only at
/// the RPC's deadline. Instead the RPC gets a stream that fails at once with the error (its
/// writes fail too), and the error carries `grpc-retry-pushback-ms: -1`, gRPC's "stop retrying"
/// (gRFC A6), so that a refusal is final for the RPC, whatever its retry policy.
enum Refusal {
    /// The metadata key and value that tell a retrying client not to try again.
    static let pushbackKey = "grpc-retry-pushback-ms"

    /// `error`, marked as final for retrying clients.
    static func final(_ error: RPCError) -> RPCError {
        var error = error
        error.metadata.replaceOrAddString("-1", forKey: Self.pushbackKey)
        return error
    }

    /// Runs `closure` on a stream whose response is `error` and whose request writes fail;
    /// `final` marks the error as not to be retried.
    static func run<Result>(
        _ error: RPCError,
        final: Bool = true,
        descriptor: MethodDescriptor,
        peer: String,
        _ closure: (
            RPCStream<
                RPCAsyncSequence<RPCResponsePart<[UInt8]>, any Error>, RPCWriter<RPCRequestPart<[UInt8]>>.Closable
            >, ClientContext
        ) async throws -> Result
    ) async throws -> Result {
        let error = final ? Self.final(error) : error
        let inbound = AsyncThrowingStream<RPCResponsePart<[UInt8]>, any Error> { $0.finish(throwing: error) }
        let stream = RPCStream(
            descriptor: descriptor,
            inbound: RPCAsyncSequence(wrapping: inbound),
            outbound: RPCWriter.Closable(wrapping: RefusedWriter(error: error))
        )
        return try await closure(stream, ClientContext(descriptor: descriptor, remotePeer: peer, localPeer: ""))
    }

    /// FAILED_PRECONDITION for an RPC that arrives once shutdown has begun: the one spelling of
    /// that refusal at every entry point (the `ClientTransport` contract's code).
    static func shuttingDown(_ service: ServiceID) -> RPCError {
        RPCError(
            code: .failedPrecondition,
            message: "the pool for '\(service)' is shutting down; no new RPCs are accepted",
            cause: GRPCPoolError(code: .shutDown, message: "pool '\(service)' is shutting down")
        )
    }
}

/// The request side of a refused RPC: every write fails with the refusal.
private struct RefusedWriter: ClosableRPCWriterProtocol {
    typealias Element = RPCRequestPart<[UInt8]>
    let error: RPCError

    func write(_ element: RPCRequestPart<[UInt8]>) async throws { throw self.error }
    func write(contentsOf elements: some Sequence<RPCRequestPart<[UInt8]>>) async throws { throw self.error }
    func finish() async {}
    func finish(throwing error: any Error) async {}
}
