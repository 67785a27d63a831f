import DemoServices
import GRPCCore
import GRPCPool
import Synchronization
import Testing

/// Streaming RPCs through the pool, against both server stacks.
@Suite("Streams")
struct StreamTests {
    static let stream = MethodDescriptor(
        fullyQualifiedService: "bench.Echo",
        method: "Stream",
        type: .bidirectionalStreaming
    )

    @Test("A bidi stream whose server speaks first starts before the client writes", arguments: Stack.allCases)
    func serverSpeaksFirst(stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 1)]) { manager in
                let client = try manager.client(for: "echo")
                var options = CallOptions.defaults
                options.timeout = .seconds(10)
                // The client writes nothing until the server's greeting is in.
                let (greeted, greet) = AsyncStream.makeStream(of: Void.self)
                let replies = try await client.bidirectionalStreaming(
                    request: StreamingClientRequest(of: [UInt8].self, metadata: ["echo-greeting": "hello"]) { writer in
                        for await _ in greeted { break }
                        try await writer.write(Array("ping".utf8))
                    },
                    descriptor: Self.stream,
                    serializer: RawBytesSerializer(),
                    deserializer: RawBytesDeserializer(),
                    options: options
                ) { response in
                    var replies: [String] = []
                    for try await message in response.messages {
                        replies.append(String(decoding: message, as: UTF8.self))
                        greet.yield()
                    }
                    return replies
                }
                #expect(replies == ["hello", "ping"])
            }
        }
    }

    @Test("16 concurrent bidi streams of 200 messages each get every reply in order", arguments: Stack.allCases)
    func orderUnderLoad(stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 2)]) { manager in
                let client = try manager.client(for: "echo")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for stream in 0..<16 {
                        group.addTask {
                            let sent = (0..<200).map { Array("\(stream)-\($0)".utf8) }
                            let replies = try await client.echoMessages(sent)
                            #expect(replies == sent, "stream \(stream): \(replies.count) replies")
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(manager.metrics()["echo"]?.successfulRequests == 16)
            }
        }
    }

    @Test(
        "A stream cancelled mid-way ends CANCELLED, frees its slot, and the next stream runs",
        arguments: Stack.allCases
    )
    func cancelledMidStream(stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 1)]) { manager in
                let client = try manager.client(for: "echo")
                let (echoed, echo) = AsyncStream.makeStream(of: Void.self)
                let stream = Task {
                    do {
                        try await client.bidirectionalStreaming(
                            request: StreamingClientRequest(of: [UInt8].self) { writer in
                                try await writer.write([1])
                                // Writes no more and never ends the request: only cancellation ends it.
                                for await _ in AsyncStream<Void>.makeStream().stream {}
                            },
                            descriptor: Self.stream,
                            serializer: RawBytesSerializer(),
                            deserializer: RawBytesDeserializer(),
                            options: .defaults
                        ) { response in
                            for try await _ in response.messages { echo.yield() }
                        }
                        return RPCError.Code?.none
                    } catch let error as RPCError {
                        return error.code
                    } catch {
                        return RPCError.Code.cancelled
                    }
                }
                var iterator = echoed.makeAsyncIterator()
                _ = await iterator.next()
                #expect(manager.metrics()["echo"]?.inFlight == 1)
                stream.cancel()
                let code = await value(of: stream, timeLimit: .seconds(10))
                #expect(code == .cancelled)
                let freed = await poll(timeLimit: .seconds(10)) { manager.metrics()["echo"]?.inFlight == 0 }
                #expect(freed, "\(manager.metrics())")
                #expect(try await client.echoMessages([[7], [8]]) == [[7], [8]])
            }
        }
    }

    @Test(
        "A deadline that passes mid-stream ends it DEADLINE_EXCEEDED after the replies so far",
        arguments: Stack.allCases
    )
    func deadlineMidStream(stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 1)]) { manager in
                let client = try manager.client(for: "echo")
                let replies = Replies()
                var options = CallOptions.defaults
                options.timeout = .milliseconds(500)
                let error = await #expect(throws: RPCError.self) {
                    try await client.bidirectionalStreaming(
                        request: StreamingClientRequest(of: [UInt8].self) { writer in
                            try await writer.write([1])
                            try await writer.write([2])
                            for await _ in AsyncStream<Void>.makeStream().stream {}
                        },
                        descriptor: Self.stream,
                        serializer: RawBytesSerializer(),
                        deserializer: RawBytesDeserializer(),
                        options: options
                    ) { response in
                        for try await message in response.messages { replies.append(message) }
                    }
                }
                #expect(error?.code == .deadlineExceeded)
                #expect(replies.all == [[1], [2]])
                let freed = await poll(timeLimit: .seconds(10)) { manager.metrics()["echo"]?.inFlight == 0 }
                #expect(freed)
            }
        }
    }

    @Test(
        "A reply over maxReceiveMessageSize ends the stream RESOURCE_EXHAUSTED; the replies before it and the next stream are intact",
        arguments: Stack.allCases
    )
    func replyOverLimit(stack: Stack) async throws {
        try await withBackend(stack) { server in
            let config = testConfig([server.target], poolSize: 1) { $0.maxReceiveMessageSize = 1024 }
            try await withPoolManager(["echo": config]) { manager in
                let client = try manager.client(for: "echo")
                let replies = Replies()
                let error = await #expect(throws: RPCError.self) {
                    try await client.bidirectionalStreaming(
                        request: StreamingClientRequest(of: [UInt8].self) { writer in
                            try await writer.write([1])
                            try await writer.write([UInt8](repeating: 2, count: 4096))
                            try await writer.write([3])
                        },
                        descriptor: Self.stream,
                        serializer: RawBytesSerializer(),
                        deserializer: RawBytesDeserializer(),
                        options: .defaults
                    ) { response in
                        for try await message in response.messages { replies.append(message) }
                    }
                }
                #expect(error?.code == .resourceExhausted)
                #expect(replies.all == [[1]])
                #expect(try await client.echoMessages([[4], [5]]) == [[4], [5]])
            }
        }
    }
}

/// Replies gathered by a response handler, read after the RPC.
final class Replies: Sendable {
    private let storage = Mutex<[[UInt8]]>([])
    func append(_ message: [UInt8]) { self.storage.withLock { $0.append(message) } }
    var all: [[UInt8]] { self.storage.withLock { $0 } }
}

extension GRPCClient {
    /// `bench.Echo/Stream` on raw bytes: writes `messages`, ends the request, returns the replies.
    func echoMessages(_ messages: [[UInt8]], timeout: Duration = .seconds(20)) async throws -> [[UInt8]] {
        var options = CallOptions.defaults
        options.timeout = timeout
        return try await self.bidirectionalStreaming(
            request: StreamingClientRequest(of: [UInt8].self) { writer in
                for message in messages { try await writer.write(message) }
            },
            descriptor: StreamTests.stream,
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: options
        ) { response in
            var replies: [[UInt8]] = []
            for try await message in response.messages { replies.append(message) }
            return replies
        }
    }
}
