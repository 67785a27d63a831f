internal import GRPCCore
internal import GRPCPoolCoreBridge

/// A core call as the stream a `ClientTransport` hands its caller: ``CoreStream`` for the
/// streaming kinds, ``UnaryCoreStream`` (one batch) for unary calls.
protocol TransportCoreStream: AnyObject, Sendable {
    associatedtype ResponseParts: AsyncSequence<RPCResponsePart<[UInt8]>, any Error> & Sendable
    associatedtype Writer: ClosableRPCWriterProtocol<RPCRequestPart<[UInt8]>> & Sendable

    /// The response, part by part.
    var responseParts: ResponseParts { get }
    /// The request side.
    var writer: Writer { get }
    /// Ends the call with `error`, now.
    func fail(_ error: RPCError)
    /// The RPC is over for the transport (its closure returned, or threw `error`): the end of
    /// the call still running is recorded.
    func close(throwing error: (any Error)?)
}

extension TransportCoreStream {
    func transportStream(descriptor: MethodDescriptor) -> PooledConnection.TransportStream {
        PooledConnection.TransportStream(
            descriptor: descriptor,
            inbound: RPCAsyncSequence(wrapping: self.responseParts),
            outbound: RPCWriter.Closable(wrapping: self.writer)
        )
    }
}

extension UnaryCoreStream: TransportCoreStream {
    var writer: UnaryCoreStreamWriter { UnaryCoreStreamWriter(stream: self) }

    func close(throwing _: (any Error)?) { self.close() }
}

extension CoreStream: TransportCoreStream {
    var writer: StreamWriter<CoreStream> { StreamWriter(stream: self) }
}
