internal import DemoServices
internal import Foundation
public import GRPCCore
internal import SwiftProtobuf

/// gRPC's interoperability test cases, client side, as described in
/// https://github.com/grpc/grpc/blob/master/doc/interop-test-descriptions.md — run against any
/// `grpc.testing.TestService` through any `ClientTransport` (here: the pool's).
public enum InteropCase: String, CaseIterable, Sendable {
    case emptyUnary = "empty_unary"
    case largeUnary = "large_unary"
    case clientCompressedUnary = "client_compressed_unary"
    case serverCompressedUnary = "server_compressed_unary"
    case clientStreaming = "client_streaming"
    case serverStreaming = "server_streaming"
    case pingPong = "ping_pong"
    case emptyStream = "empty_stream"
    case customMetadata = "custom_metadata"
    case statusCodeAndMessage = "status_code_and_message"
    case specialStatusMessage = "special_status_message"
    case unimplementedMethod = "unimplemented_method"
    case unimplementedService = "unimplemented_service"
    case cancelAfterBegin = "cancel_after_begin"
    case cancelAfterFirstResponse = "cancel_after_first_response"
    case timeoutOnSleepingServer = "timeout_on_sleeping_server"

    /// The case's name in the interop descriptions.
    public var name: String { self.rawValue }

    /// Runs the case.
    ///
    /// - Throws: ``InteropFailure`` describing the first check that failed, or the RPC's error.
    public func run<Transport: ClientTransport>(using client: GRPCClient<Transport>) async throws {
        let test = Grpc_Testing_TestService.Client(wrapping: client)
        switch self {
        case .emptyUnary: try await Self.emptyUnary(test)
        case .largeUnary: try await Self.largeUnary(test)
        case .clientCompressedUnary: try await Self.clientCompressedUnary(test)
        case .serverCompressedUnary: try await Self.serverCompressedUnary(test)
        case .clientStreaming: try await Self.clientStreaming(test)
        case .serverStreaming: try await Self.serverStreaming(test)
        case .pingPong: try await Self.pingPong(test)
        case .emptyStream: try await Self.emptyStream(test)
        case .customMetadata: try await Self.customMetadata(test)
        case .statusCodeAndMessage: try await Self.statusCodeAndMessage(test)
        case .specialStatusMessage: try await Self.specialStatusMessage(test)
        case .unimplementedMethod: try await Self.unimplementedMethod(test)
        case .unimplementedService: try await Self.unimplementedService(client)
        case .cancelAfterBegin: try await Self.cancelAfterBegin(test)
        case .cancelAfterFirstResponse: try await Self.cancelAfterFirstResponse(test)
        case .timeoutOnSleepingServer: try await Self.timeoutOnSleepingServer(test)
        }
    }

    // One function per case.

    private static func emptyUnary<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        let response = try await test.emptyCall(Grpc_Testing_Empty())
        try check(response == Grpc_Testing_Empty(), "the response is not empty")
    }

    private static func largeUnary<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        let response = try await test.unaryCall(Self.largeRequest())
        try check(
            response.payload.body.count == 314_159,
            "payload of \(response.payload.body.count) bytes, expected 314159"
        )
        try check(response.payload.body.allSatisfy { $0 == 0 }, "payload is not all zeros")
    }

    private static func clientCompressedUnary<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        // The probe: a server that checks must reject an uncompressed "expect_compressed" request.
        var probe = Self.largeRequest()
        probe.expectCompressed = .with { $0.value = true }
        var plain = CallOptions.defaults
        plain.compression = CompressionAlgorithm.none
        do {
            _ = try await test.unaryCall(probe, options: plain)
            throw InteropFailure("the server accepted an uncompressed request that expected compression")
        } catch let error as RPCError {
            try check(error.code == .invalidArgument, "probe failed with \(error.code), expected INVALID_ARGUMENT")
        }
        var compressed = CallOptions.defaults
        compressed.compression = .gzip
        let response = try await test.unaryCall(probe, options: compressed)
        try check(
            response.payload.body.count == 314_159,
            "compressed call got \(response.payload.body.count) bytes"
        )
        var uncompressed = Self.largeRequest()
        uncompressed.expectCompressed = .with { $0.value = false }
        let second = try await test.unaryCall(uncompressed, options: plain)
        try check(second.payload.body.count == 314_159, "uncompressed call got \(second.payload.body.count) bytes")
    }

    private static func serverCompressedUnary<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        for compressed in [true, false] {
            var request = Self.largeRequest()
            request.responseCompressed = .with { $0.value = compressed }
            let response = try await test.unaryCall(request)
            try check(response.payload.body.count == 314_159, "got \(response.payload.body.count) bytes")
        }
    }

    private static func clientStreaming<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        let sizes = [27_182, 8, 1_828, 45_904]
        let response = try await test.streamingInputCall { writer in
            for size in sizes {
                try await writer.write(.with { $0.payload = TestService.payload(size: size) })
            }
        }
        try check(
            response.aggregatedPayloadSize == 74_922,
            "aggregated \(response.aggregatedPayloadSize), expected 74922"
        )
    }

    private static func serverStreaming<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        let sizes = [31_415, 9, 2_653, 58_979]
        let request = Grpc_Testing_StreamingOutputCallRequest.with {
            $0.responseParameters = sizes.map { size in .with { $0.size = Int32(size) } }
        }
        let received = try await test.streamingOutputCall(request) { response in
            var received: [Int] = []
            for try await message in response.messages { received.append(message.payload.body.count) }
            return received
        }
        try check(received == sizes, "received sizes \(received), expected \(sizes)")
    }

    private static func pingPong<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        let requestSizes = [27_182, 8, 1_828, 45_904]
        let responseSizes = [31_415, 9, 2_653, 58_979]
        let (turns, turn) = AsyncStream.makeStream(of: Void.self)
        let received = try await test.fullDuplexCall { writer in
            var turns = turns.makeAsyncIterator()
            for (requestSize, responseSize) in zip(requestSizes, responseSizes) {
                try await writer.write(
                    .with {
                        $0.responseParameters = [.with { $0.size = Int32(responseSize) }]
                        $0.payload = TestService.payload(size: requestSize)
                    }
                )
                // Wait for the answer before the next request: one ping, one pong.
                guard await turns.next() != nil else { return }
            }
        } onResponse: { response in
            var received: [Int] = []
            for try await message in response.messages {
                received.append(message.payload.body.count)
                turn.yield()
            }
            turn.finish()
            return received
        }
        try check(received == responseSizes, "received sizes \(received), expected \(responseSizes)")
    }

    private static func emptyStream<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        let count = try await test.fullDuplexCall { _ in
        } onResponse: { response in
            var count = 0
            for try await _ in response.messages { count += 1 }
            return count
        }
        try check(count == 0, "received \(count) messages, expected none")
    }

    private static func customMetadata<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        let metadata: Metadata = [
            "x-grpc-test-echo-initial": "test_initial_metadata_value",
            "x-grpc-test-echo-trailing-bin": .binary([0xab, 0xab, 0xab]),
        ]
        try await test.unaryCall(Self.largeRequest(), metadata: metadata) { response in
            try Self.checkEchoed(initial: response.metadata, trailing: response.trailingMetadata)
            _ = try response.message
        }
        let request = Grpc_Testing_StreamingOutputCallRequest.with {
            $0.responseParameters = [.with { $0.size = 314_159 }]
            $0.payload = TestService.payload(size: 271_828)
        }
        try await test.fullDuplexCall(metadata: metadata) { writer in
            try await writer.write(request)
        } onResponse: { response in
            var trailing: Metadata = [:]
            for try await part in response.bodyParts {
                if case .trailingMetadata(let metadata) = part { trailing = metadata }
            }
            try Self.checkEchoed(initial: response.metadata, trailing: trailing)
        }
    }

    private static func statusCodeAndMessage<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        try await Self.checkStatus(test, message: "test status message")
    }

    private static func specialStatusMessage<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        try await Self.checkStatus(test, message: "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n")
    }

    private static func unimplementedMethod<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        try await Self.checkUnimplemented("UnimplementedCall") {
            _ = try await test.unimplementedCall(Grpc_Testing_Empty())
        }
    }

    private static func unimplementedService<Transport: ClientTransport>(
        _ client: GRPCClient<Transport>
    ) async throws {
        try await Self.checkUnimplemented("UnimplementedService/UnimplementedCall") {
            _ = try await Grpc_Testing_UnimplementedService.Client(wrapping: client).unimplementedCall(
                Grpc_Testing_Empty()
            )
        }
    }

    private static func cancelAfterBegin<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        let task = Task {
            try await test.streamingInputCall { _ in
                try await Task.sleep(for: .seconds(30))
            }
        }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        try await Self.checkCancelled(task)
    }

    private static func cancelAfterFirstResponse<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        let task = Task {
            try await test.fullDuplexCall { writer in
                try await writer.write(
                    .with {
                        $0.responseParameters = [.with { $0.size = 31_415 }]
                        $0.payload = TestService.payload(size: 27_182)
                    }
                )
                try await Task.sleep(for: .seconds(30))
            } onResponse: { response in
                for try await _ in response.messages {
                    withUnsafeCurrentTask { $0?.cancel() }
                    try await Task.sleep(for: .seconds(30))
                }
            }
        }
        try await Self.checkCancelled(task)
    }

    private static func timeoutOnSleepingServer<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>
    ) async throws {
        var options = CallOptions.defaults
        options.timeout = .milliseconds(1)
        do {
            try await test.fullDuplexCall(options: options) { writer in
                try await writer.write(.with { $0.payload = TestService.payload(size: 27_182) })
                try await Task.sleep(for: .seconds(5))
            } onResponse: { response in
                for try await _ in response.messages {}
            }
            throw InteropFailure("the call outlived its 1 ms deadline")
        } catch let error as RPCError {
            try check(error.code == .deadlineExceeded, "failed with \(error.code), expected DEADLINE_EXCEEDED")
        }
    }

    /// That `call` (`name`) failed with UNIMPLEMENTED.
    private static func checkUnimplemented(_ name: String, _ call: () async throws -> Void) async throws {
        do {
            try await call()
            throw InteropFailure("\(name) succeeded")
        } catch let error as RPCError {
            try check(error.code == .unimplemented, "failed with \(error.code), expected UNIMPLEMENTED")
        }
    }

    /// That `task`'s call ended cancelled: CANCELLED, or the task's own cancellation, which
    /// GRPCCore may surface as such.
    private static func checkCancelled<Success: Sendable>(_ task: Task<Success, any Error>) async throws {
        do {
            _ = try await task.value
            throw InteropFailure("the cancelled call succeeded")
        } catch let error as RPCError {
            try check(error.code == .cancelled, "failed with \(error.code), expected CANCELLED")
        } catch is CancellationError {
            // The call was cancelled.
        }
    }

    static func largeRequest() -> Grpc_Testing_SimpleRequest {
        .with {
            $0.responseSize = 314_159
            $0.payload = TestService.payload(size: 271_828)
        }
    }

    private static func checkEchoed(initial: Metadata, trailing: Metadata) throws {
        let echoedInitial = Array(initial[stringValues: "x-grpc-test-echo-initial"])
        try check(echoedInitial == ["test_initial_metadata_value"], "initial metadata echoed: \(echoedInitial)")
        let echoedTrailing = Array(trailing[binaryValues: "x-grpc-test-echo-trailing-bin"])
        try check(echoedTrailing == [[0xab, 0xab, 0xab]], "trailing metadata echoed: \(echoedTrailing)")
    }

    private static func checkStatus<Transport: ClientTransport>(
        _ test: Grpc_Testing_TestService.Client<Transport>,
        message: String
    ) async throws {
        let status = Grpc_Testing_EchoStatus.with {
            $0.code = 2
            $0.message = message
        }
        do {
            _ = try await test.unaryCall(.with { $0.responseStatus = status })
            throw InteropFailure("UnaryCall succeeded despite response_status")
        } catch let error as RPCError {
            try check(error.code == .unknown, "UnaryCall failed with \(error.code), expected UNKNOWN")
            try check(error.message == message, "UnaryCall message \(error.message.debugDescription)")
        }
        do {
            try await test.fullDuplexCall { writer in
                try await writer.write(.with { $0.responseStatus = status })
            } onResponse: { response in
                for try await _ in response.messages {}
            }
            throw InteropFailure("FullDuplexCall succeeded despite response_status")
        } catch let error as RPCError {
            try check(error.code == .unknown, "FullDuplexCall failed with \(error.code), expected UNKNOWN")
            try check(error.message == message, "FullDuplexCall message \(error.message.debugDescription)")
        }
    }
}

/// A failed interop check.
public struct InteropFailure: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

private func check(_ condition: Bool, _ message: @autoclosure () -> String) throws {
    if !condition { throw InteropFailure(message()) }
}
