internal import Foundation
public import GRPCCore
internal import SwiftProtobuf

/// `grpc.testing.TestService`, the server side of gRPC's interoperability test cases
/// (https://github.com/grpc/grpc/blob/master/doc/interop-test-descriptions.md).
///
/// It echoes `x-grpc-test-echo-initial` in the initial metadata and
/// `x-grpc-test-echo-trailing-bin` in the trailing metadata, honours `response_status`,
/// rejects an uncompressed request that says `expect_compressed`, and sleeps
/// `interval_us` between streamed responses.
public struct TestService: Grpc_Testing_TestService.ServiceProtocol {
    public init() {}

    public func emptyCall(
        request: ServerRequest<Grpc_Testing_Empty>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_Empty> {
        ServerResponse(
            message: Grpc_Testing_Empty(),
            metadata: Self.echoInitial(request.metadata),
            trailingMetadata: Self.echoTrailing(request.metadata)
        )
    }

    public func unaryCall(
        request: ServerRequest<Grpc_Testing_SimpleRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_SimpleResponse> {
        let message = request.message
        if message.hasResponseStatus, message.responseStatus.code != 0 {
            throw Self.error(message.responseStatus, trailing: Self.echoTrailing(request.metadata))
        }
        if message.expectCompressed.value, !Self.isCompressed(request.metadata) {
            throw RPCError(code: .invalidArgument, message: "expected a compressed request")
        }
        let response = Grpc_Testing_SimpleResponse.with {
            $0.payload = Self.payload(size: Int(message.responseSize))
        }
        return ServerResponse(
            message: response,
            metadata: Self.echoInitial(request.metadata),
            trailingMetadata: Self.echoTrailing(request.metadata)
        )
    }

    public func cacheableUnaryCall(
        request: ServerRequest<Grpc_Testing_SimpleRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_SimpleResponse> {
        try await self.unaryCall(request: request, context: context)
    }

    public func streamingOutputCall(
        request: ServerRequest<Grpc_Testing_StreamingOutputCallRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Grpc_Testing_StreamingOutputCallResponse> {
        let message = request.message
        if message.hasResponseStatus, message.responseStatus.code != 0 {
            throw Self.error(message.responseStatus, trailing: [:])
        }
        return StreamingServerResponse(metadata: Self.echoInitial(request.metadata)) { writer in
            for parameters in message.responseParameters {
                try await Self.respond(parameters, to: writer)
            }
            return Self.echoTrailing(request.metadata)
        }
    }

    public func streamingInputCall(
        request: StreamingServerRequest<Grpc_Testing_StreamingInputCallRequest>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_StreamingInputCallResponse> {
        var total = 0
        for try await message in request.messages {
            if message.expectCompressed.value, !Self.isCompressed(request.metadata) {
                throw RPCError(code: .invalidArgument, message: "expected a compressed request")
            }
            total += message.payload.body.count
        }
        return ServerResponse(
            message: .with { $0.aggregatedPayloadSize = Int32(total) },
            metadata: Self.echoInitial(request.metadata),
            trailingMetadata: Self.echoTrailing(request.metadata)
        )
    }

    public func fullDuplexCall(
        request: StreamingServerRequest<Grpc_Testing_StreamingOutputCallRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Grpc_Testing_StreamingOutputCallResponse> {
        StreamingServerResponse(metadata: Self.echoInitial(request.metadata)) { writer in
            for try await message in request.messages {
                if message.hasResponseStatus, message.responseStatus.code != 0 {
                    throw Self.error(message.responseStatus, trailing: Self.echoTrailing(request.metadata))
                }
                for parameters in message.responseParameters {
                    try await Self.respond(parameters, to: writer)
                }
            }
            return Self.echoTrailing(request.metadata)
        }
    }

    public func halfDuplexCall(
        request: StreamingServerRequest<Grpc_Testing_StreamingOutputCallRequest>,
        context: ServerContext
    ) async throws -> StreamingServerResponse<Grpc_Testing_StreamingOutputCallResponse> {
        var all: [Grpc_Testing_StreamingOutputCallRequest] = []
        for try await message in request.messages { all.append(message) }
        return StreamingServerResponse(metadata: Self.echoInitial(request.metadata)) { [all] writer in
            for message in all {
                for parameters in message.responseParameters { try await Self.respond(parameters, to: writer) }
            }
            return Self.echoTrailing(request.metadata)
        }
    }

    public func unimplementedCall(
        request: ServerRequest<Grpc_Testing_Empty>,
        context: ServerContext
    ) async throws -> ServerResponse<Grpc_Testing_Empty> {
        throw RPCError(code: .unimplemented, message: "grpc.testing.TestService/UnimplementedCall is unimplemented")
    }

    // MARK: - Helpers

    private static func respond(
        _ parameters: Grpc_Testing_ResponseParameters,
        to writer: RPCWriter<Grpc_Testing_StreamingOutputCallResponse>
    ) async throws {
        if parameters.intervalUs > 0 {
            try await Task.sleep(for: .microseconds(Int(parameters.intervalUs)))
        }
        try await writer.write(.with { $0.payload = Self.payload(size: Int(parameters.size)) })
    }

    /// A payload of `size` zero bytes.
    public static func payload(size: Int) -> Grpc_Testing_Payload {
        .with { $0.body = Data(count: size) }
    }

    private static func error(_ status: Grpc_Testing_EchoStatus, trailing: Metadata) -> RPCError {
        let code = Status.Code(rawValue: Int(status.code)).flatMap(RPCError.Code.init) ?? .unknown
        return RPCError(code: code, message: status.message, metadata: trailing)
    }

    private static func isCompressed(_ metadata: Metadata) -> Bool {
        metadata[stringValues: "grpc-encoding"].contains { $0 != "identity" }
    }

    private static func echoInitial(_ metadata: Metadata) -> Metadata {
        Metadata(metadata.filter { $0.key == "x-grpc-test-echo-initial" })
    }

    private static func echoTrailing(_ metadata: Metadata) -> Metadata {
        Metadata(metadata.filter { $0.key == "x-grpc-test-echo-trailing-bin" })
    }
}
