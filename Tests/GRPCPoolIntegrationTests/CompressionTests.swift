import DemoServices
import GRPCCore
import GRPCPool
import Testing

/// Which request messages go out gzipped, read off the wire (each length-prefixed message's
/// compressed flag, decoded by tshark) against both server stacks.
@Suite("Compression on the wire")
struct CompressionTests {
    /// Message sizes around the default threshold (2048 bytes).
    static let sizes = [32, 1024, 2047, 2048, 65536]

    /// Bytes that gzip makes smaller at every size, 32 included (the core sends a message that
    /// gzip did not shrink uncompressed, after trying).
    static func payload(_ size: Int) -> [UInt8] {
        [UInt8](repeating: 7, count: size)
    }

    @Test(
        "The defaults gzip unary and streamed messages from compressionThreshold on, and no smaller one",
        arguments: Stack.allCases
    )
    func defaultThreshold(stack: Stack) async throws {
        let messages = try await Self.requests(on: stack) { _ in }
        let expected = Self.sizes.map { $0 >= 2048 }
        #expect(messages.map(\.compressed) == expected + expected, "\(messages)")
        for (message, size) in zip(messages, Self.sizes + Self.sizes) {
            if message.compressed {
                #expect(message.length < size, "a gzipped message of \(size) bytes: \(message)")
            } else {
                #expect(message.length == size, "a plain message of \(size) bytes: \(message)")
            }
        }
    }

    @Test("compressionThreshold 0 gzips every message; compression off gzips none", arguments: Stack.allCases)
    func thresholdZeroAndOff(stack: Stack) async throws {
        let all = try await Self.requests(on: stack) { $0.compressionThreshold = 0 }
        #expect(all.map(\.compressed) == Array(repeating: true, count: Self.sizes.count * 2), "\(all)")
        let none = try await Self.requests(on: stack) { $0.compression = false }
        #expect(none.map(\.compressed) == Array(repeating: false, count: Self.sizes.count * 2), "\(none)")
        #expect(none.map(\.length) == Self.sizes + Self.sizes)
    }

    @Test("A grpc-swift server that accepts no compression (its default) loses no call to the defaults")
    func serverRefusingGzip() async throws {
        let server = DemoServer(compression: .none)
        try await server.start()
        defer { Task { await server.stop() } }
        let config = PoolManager.ServiceConfig(host: "127.0.0.1", port: server.port, poolSize: 1)
        // A small unary call asks for no encoding; a large one is refused (UNIMPLEMENTED before
        // any handler) and sent again at once uncompressed; after that nothing asks for gzip.
        try await withPoolManager(["svc": config]) { manager in
            let client = try manager.client(for: "svc")
            #expect(try await client.echo(Self.payload(32), timeout: .seconds(10)).count == 32)
            #expect(try await client.echo(Self.payload(65536), timeout: .seconds(10)).count == 65536)
            #expect(try await client.echoStream(Self.sizes.map(Self.payload), timeout: .seconds(10)) == Self.sizes)
            #expect(manager.metrics()["svc"]?.failedRequests == 0)
        }
        // A stream first, retries off: its request stays open after its start, so it asks for no
        // encoding until the server has accepted gzip (a refusal then may come as RST_STREAM
        // CANCEL, which says nothing of compression). It goes through at once; so do the large
        // unary call (refused and sent again) and the streams after it.
        var noRetries = config
        noRetries.enableRetries = false
        try await withPoolManager(["svc": noRetries]) { manager in
            let client = try manager.client(for: "svc")
            for _ in 0..<3 {
                #expect(try await client.echoStream(Self.sizes.map(Self.payload), timeout: .seconds(10)) == Self.sizes)
            }
            #expect(try await client.echo(Self.payload(65536), timeout: .seconds(10)).count == 65536)
            #expect(try await client.echoStream(Self.sizes.map(Self.payload), timeout: .seconds(10)) == Self.sizes)
            #expect(manager.metrics()["svc"]?.failedRequests == 0)
        }
        // A server-streaming call whose start batch ends its request (its one message and the
        // half-close together, the usual case) asks for gzip, and its refusal is clean: without
        // retries the caller sees it as UNAVAILABLE saying why. Started before its half-close (the
        // reader may start it first on a slow machine), it asks for nothing and goes through.
        try await withPoolManager(["svc": noRetries]) { manager in
            let client = try manager.client(for: "svc")
            do {
                try await client.serverStreaming(
                    request: ClientRequest(message: Self.payload(65536)),
                    descriptor: EchoService.Method.serverStream,
                    serializer: RawBytesSerializer(),
                    deserializer: RawBytesDeserializer(),
                    options: .defaults
                ) { response in
                    for try await _ in response.messages {}
                }
            } catch let error as RPCError {
                #expect(error.code == .unavailable, "\(error)")
                #expect(error.message.contains("does not accept gzip"), "\(error)")
            }
            #expect(try await client.echo(Self.payload(65536), timeout: .seconds(10)).count == 65536)
        }
    }

    /// The request messages of one unary call per size and of one bidirectional stream with a
    /// message per size (each echoed before the next goes), through the pool-wide client of a
    /// one-connection pool on the defaults as `configure` changes them. The health check is the
    /// connectivity-only default, so the only RPC of the pool's own is the keepalive RPC.
    static func requests(
        on stack: Stack,
        configure: (inout PoolManager.ServiceConfig) -> Void
    ) async throws -> [WireMessage] {
        try await withBackend(stack) { server in
            let port = Int(server.target.split(separator: ":").last!)!
            var config = PoolManager.ServiceConfig(host: "127.0.0.1", port: port, poolSize: 1)
            configure(&config)
            // A run slower than keepaliveTime (10 s) sends the pool's keepalive RPC: a health
            // check whose request (no service name) is 0 bytes, none of the test's messages.
            return try await captureMessages(toPort: port, count: Self.sizes.count * 2, ignoring: { $0.length == 0 }) {
                try await withPoolManager(["svc": config]) { manager in
                    let client = try manager.client(for: "svc")
                    for size in Self.sizes {
                        let echoed = try await client.echo(Self.payload(size), timeout: .seconds(10))
                        #expect(echoed.count == size)
                    }
                    let echoes = try await client.echoStream(Self.sizes.map(Self.payload), timeout: .seconds(10))
                    #expect(echoes == Self.sizes)
                }
            }
        }
    }
}

extension GRPCClient {
    /// One `bench.Echo/Stream` call: each message written once the one before it is echoed;
    /// the sizes of the echoes.
    func echoStream(_ messages: [[UInt8]], timeout: Duration) async throws -> [Int] {
        var options = CallOptions.defaults
        options.timeout = timeout
        let (turns, turn) = AsyncStream.makeStream(of: Void.self)
        let request = StreamingClientRequest(of: [UInt8].self) { writer in
            var iterator = turns.makeAsyncIterator()
            for message in messages {
                try await writer.write(message)
                guard await iterator.next() != nil else { return }
            }
        }
        return try await self.bidirectionalStreaming(
            request: request,
            descriptor: MethodDescriptor(
                fullyQualifiedService: "bench.Echo",
                method: "Stream",
                type: .bidirectionalStreaming
            ),
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: options
        ) { response in
            var sizes: [Int] = []
            for try await message in response.messages {
                sizes.append(message.count)
                turn.yield()
            }
            turn.finish()
            return sizes
        }
    }
}
