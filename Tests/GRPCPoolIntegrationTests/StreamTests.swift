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

    @Test("8 concurrent bidi streams of 100 messages each get every reply in order", arguments: Stack.allCases)
    func orderUnderLoad(stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 2)]) { manager in
                let client = try manager.client(for: "echo")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for stream in 0..<8 {
                        group.addTask {
                            let sent = (0..<100).map { Array("\(stream)-\($0)".utf8) }
                            let replies = try await client.echoMessages(sent)
                            #expect(replies == sent, "stream \(stream): \(replies.count) replies")
                        }
                    }
                    try await group.waitForAll()
                }
                #expect(manager.metrics()["echo"]?.successfulRequests == 8)
            }
        }
    }

    @Test(
        "The server ends a stream while the request is still open: the caller gets its replies and OK",
        arguments: Stack.allCases
    )
    func serverEndsFirst(stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 1)]) { manager in
                let client = try manager.client(for: "echo")
                var options = CallOptions.defaults
                options.timeout = .seconds(10)
                let replies = try await client.bidirectionalStreaming(
                    request: StreamingClientRequest(of: [UInt8].self, metadata: ["echo-limit": "2"]) { writer in
                        try await writer.write([1])
                        try await writer.write([2])
                        // Never ends the request itself: the RPC's end has to stop this writer.
                        for await _ in AsyncStream<Void>.makeStream().stream {}
                    },
                    descriptor: Self.stream,
                    serializer: RawBytesSerializer(),
                    deserializer: RawBytesDeserializer(),
                    options: options
                ) { response in
                    var replies: [[UInt8]] = []
                    for try await message in response.messages { replies.append(message) }
                    return replies
                }
                #expect(replies == [[1], [2]])
                #expect(await poll(timeLimit: .seconds(10)) { manager.metrics()["echo"]?.inFlight == 0 })
                #expect(manager.metrics()["echo"]?.successfulRequests == 1)
            }
        }
    }

    @Test("A request that ends before its first message: the server still answers", arguments: Stack.allCases)
    func clientEndsFirst(stack: Stack) async throws {
        try await withBackend(stack) { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 1)]) { manager in
                let client = try manager.client(for: "echo")
                var options = CallOptions.defaults
                options.timeout = .seconds(10)
                let replies = try await client.bidirectionalStreaming(
                    request: StreamingClientRequest(of: [UInt8].self, metadata: ["echo-greeting": "hello"]) { _ in },
                    descriptor: Self.stream,
                    serializer: RawBytesSerializer(),
                    deserializer: RawBytesDeserializer(),
                    options: options
                ) { response in
                    var replies: [String] = []
                    for try await message in response.messages {
                        replies.append(String(decoding: message, as: UTF8.self))
                    }
                    return replies
                }
                #expect(replies == ["hello"])
            }
        }
    }

    @Test("A refused stream is sent again, the same request in order, and answered on the retry")
    func refusedStreamRetried() async throws {
        try await withDemoServer { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 2)]) { manager in
                let client = try manager.client(for: "echo")
                server.failNextCalls(1, with: .init(code: .unavailable, message: "refused once"))
                let sent: [[UInt8]] = (1...5).map { [UInt8($0)] }
                #expect(try await client.echoMessages(sent) == sent)
                let metrics = try #require(manager.metrics()["echo"])
                #expect(metrics.failedRequests == 1, "the refused attempt is counted on its connection")
                #expect(metrics.successfulRequests == 1)
            }
        }
    }

    @Test("A stream refused on every attempt ends with the last refusal after maxAttempts", arguments: Stack.allCases)
    func refusedStreamGivesUp(stack: Stack) async throws {
        try await withBackend(stack) { server in
            let config = testConfig([server.target], poolSize: 2) { $0.retryPolicy.initialBackoff = .milliseconds(10) }
            try await withPoolManager(["echo": config]) { manager in
                let client = try manager.client(for: "echo")
                var options = CallOptions.defaults
                options.timeout = .seconds(10)
                let error = await #expect(throws: RPCError.self) {
                    try await client.bidirectionalStreaming(
                        request: StreamingClientRequest(
                            of: [UInt8].self,
                            metadata: ["echo-status": "14", "echo-message": "not now"]
                        ) { writer in
                            try await writer.write([1])
                        },
                        descriptor: Self.stream,
                        serializer: RawBytesSerializer(),
                        deserializer: RawBytesDeserializer(),
                        options: options
                    ) { response in
                        for try await _ in response.messages {}
                    }
                }
                #expect(error?.code == .unavailable)
                #expect(error?.message.hasPrefix("not now") == true, "\(String(describing: error))")
                let metrics = try #require(manager.metrics()["echo"])
                #expect(metrics.failedRequests == config.retryPolicy.maxAttempts)
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
                #expect(
                    await poll(timeLimit: .seconds(10)) { server.cancelledRPCs == 1 },
                    "the server saw it cancelled"
                )
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
                options.timeout = .seconds(1)
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
                // Each reply that came before the deadline is intact and in order (on a loaded
                // machine the deadline may come before either).
                #expect([[1], [2]].starts(with: replies.all), "\(replies.all)")
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

    @Test(
        "A stream whose server dies ends UNAVAILABLE, its connection leaves the rotation, the next streams go to the other",
        arguments: Stack.allCases
    )
    func connectionDiesMidStream(stack: Stack) async throws {
        try await withBackend(stack) { first in
            try await withBackend(stack) { second in
                let config = testConfig([first.target, second.target], poolSize: 2)
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    let client = try manager.client(for: "echo")
                    let open = OpenStream(client: client)
                    #expect(try await open.send([1]) == [1])
                    let carrier = try #require(pool.metrics().connections.first { $0.inFlight == 1 })
                    let other = try #require(pool.metrics().connections.first { $0.index != carrier.index })
                    await (carrier.endpoint == first.target ? first : second).halt()
                    let error = await #expect(throws: RPCError.self) { try await open.end() }
                    #expect(error?.code == .unavailable, "\(String(describing: error))")
                    #expect(await poll(timeLimit: .seconds(10)) { !pool.connections[carrier.index].isHealthy })
                    for round in 0..<4 {
                        #expect(try await client.echoMessages([[UInt8(round)]]) == [[UInt8(round)]])
                    }
                    let served = pool.metrics().connections[other.index].totalRequests - other.totalRequests
                    #expect(served >= 4, "the streams after the failure went to the live connection")
                }
            }
        }
    }

    @Test(
        "One connection carries streamCapacity - 1 open streams; the next waits until one ends, then runs",
        arguments: Stack.allCases
    )
    func streamsAtCapacity(stack: Stack) async throws {
        try await withBackend(stack) { server in
            let config = testConfig([server.target], poolSize: 1) { $0.timeout = .seconds(60) }
            try await withPoolManager(["echo": config]) { manager in
                let pool = try manager.pool(for: "echo")
                let client = try manager.client(for: "echo")
                let capacity = config.streamCapacity - 1
                var streams: [OpenStream] = []
                for index in 0..<capacity {
                    let stream = OpenStream(client: client)
                    streams.append(stream)
                    #expect(try await stream.send([UInt8(index)]) == [UInt8(index)])
                }
                #expect(pool.metrics().inFlight == capacity)
                // One more: queued, not on the wire, until a stream ends.
                let next = OpenStream(client: client)
                let reply = Task { try await next.send([0xFF]) }
                #expect(await poll { pool.metrics().queuedCalls == 1 })
                #expect(try await streams[0].end() == [[0]])
                #expect(try await reply.value == [0xFF])
                #expect(try await next.end() == [[0xFF]])
                for (index, stream) in streams.enumerated().dropFirst() {
                    #expect(try await stream.end() == [[UInt8(index)]])
                }
                #expect(pool.metrics().successfulRequests == capacity + 1)
            }
        }
    }

    @Test(
        "A stream held across a maxConnectionAge refresh finishes on the old connection; new streams use the new one",
        arguments: Stack.allCases
    )
    func streamAcrossRefresh(stack: Stack) async throws {
        try await withBackend(stack) { server in
            let proxy = TCPProxy(targetPort: Int(server.target.split(separator: ":").last!)!)
            try await proxy.start()
            defer { Task { await proxy.stop() } }
            let age = Duration.seconds(60)
            let config = testConfig([proxy.target], poolSize: 1) { $0.maxConnectionAge = age }
            let clock = ManualClock()
            try await withPoolManager(["echo": config], clock: clock) { manager in
                let pool = try manager.pool(for: "echo")
                let client = try manager.client(for: "echo")
                let old = OpenStream(client: client)
                #expect(try await old.send([1]) == [1])
                let accepted = proxy.acceptedConnections

                // The connection's age passes on the pool's clock: a new channel replaces it.
                let reconnects = pool.connections[0].metrics().reconnects
                clock.advance(by: age * 1.1)
                #expect(await poll { pool.connections[0].metrics().reconnects > reconnects })
                #expect(proxy.acceptedConnections > accepted)
                #expect(proxy.openConnections >= 2, "the old connection stays while its stream is open")

                // A new stream opens; the old one still works and finishes, and its connection closes.
                let new = OpenStream(client: client)
                #expect(try await new.send([2]) == [2])
                #expect(try await old.send([3]) == [3])
                #expect(try await old.end() == [[1], [3]])
                #expect(
                    await poll { proxy.openConnections == 1 },
                    "the drained connection closes once its stream ended, the new stream still open"
                )
                #expect(try await new.send([4]) == [4])
                #expect(try await new.end() == [[2], [4]])
            }
        }
    }
}

/// A bidi `bench.Echo/Stream` held open: each ``send(_:)`` writes a message and waits for its
/// echo; ``end()`` ends the request and returns every reply, or the RPC's error.
final class OpenStream: Sendable {
    private let messages: AsyncStream<[UInt8]>.Continuation
    /// Read by one ``send(_:)`` at a time.
    private let echoes: AsyncStream<[UInt8]>
    private let rpc: Task<[[UInt8]], any Error>

    init(client: GRPCClient<some ClientTransport>, metadata: Metadata = [:], timeout: Duration = .seconds(60)) {
        let (requests, messages) = AsyncStream.makeStream(of: [UInt8].self)
        let (echoes, echo) = AsyncStream.makeStream(of: [UInt8].self)
        self.messages = messages
        self.echoes = echoes
        var options = CallOptions.defaults
        options.timeout = timeout
        self.rpc = Task {
            defer { echo.finish() }
            return try await client.bidirectionalStreaming(
                request: StreamingClientRequest(of: [UInt8].self, metadata: metadata) { writer in
                    for await message in requests { try await writer.write(message) }
                },
                descriptor: StreamTests.stream,
                serializer: RawBytesSerializer(),
                deserializer: RawBytesDeserializer(),
                options: options
            ) { response in
                var replies: [[UInt8]] = []
                for try await message in response.messages {
                    replies.append(message)
                    echo.yield(message)
                }
                return replies
            }
        }
    }

    /// Writes `message`; its echo (`nil` if the stream ended first).
    func send(_ message: [UInt8]) async throws -> [UInt8]? {
        self.messages.yield(message)
        var iterator = self.echoes.makeAsyncIterator()
        return await iterator.next()
    }

    /// Ends the request; every reply, or the RPC's error.
    func end() async throws -> [[UInt8]] {
        self.messages.finish()
        return try await self.rpc.value
    }

    /// Every reply, or the RPC's error, with the request left open.
    func result() async throws -> [[UInt8]] {
        try await self.rpc.value
    }

    /// Cancels the RPC's task.
    func cancel() {
        self.rpc.cancel()
    }

    deinit {
        self.messages.finish()
        self.rpc.cancel()
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
