import DemoServices
import GRPCCore
import GRPCPool
import Synchronization
import Testing

extension IsolatedTests {
    /// Streams measured against time or the process's resident size, or captured with tshark
    /// (which falls behind on a busy machine): run where no other test loads the machine.
    @Suite("Streams, alone")
    struct StreamLoadTests {
        static let stream = StreamTests.stream

        @Test(
            "A server that does not read holds the writer back: writes suspend within a bound, then every message goes through",
            arguments: Stack.allCases
        )
        func backPressure(stack: Stack) async throws {
            try await withBackend(stack) { server in
                let config = testConfig([server.target], poolSize: 1) { $0.compression = false }
                try await withPoolManager(["echo": config]) { manager in
                    let client = try manager.client(for: "echo")
                    let message = [UInt8](repeating: 7, count: 64 << 10)
                    let total = 1024  // 64 MiB
                    let written = Mutex(0)
                    var options = CallOptions.defaults
                    options.timeout = .seconds(60)
                    // The server reads nothing for its first 3 s.
                    let rpc = Task {
                        try await client.bidirectionalStreaming(
                            request: StreamingClientRequest(of: [UInt8].self, metadata: ["echo-delay-ms": "3000"]) {
                                writer in
                                for _ in 0..<total {
                                    try await writer.write(message)
                                    written.withLock { $0 += 1 }
                                }
                            },
                            descriptor: Self.stream,
                            serializer: RawBytesSerializer(),
                            deserializer: RawBytesDeserializer(),
                            options: options
                        ) { response in
                            var bytes = 0
                            for try await echo in response.messages { bytes += echo.count }
                            return bytes
                        }
                    }
                    #expect(await poll { written.withLock { $0 } > 0 })
                    // Within the server's pause: the writer has stopped well short of the whole request.
                    try await Task.sleep(for: .seconds(1))
                    let early = written.withLock { $0 }
                    // The flow-control windows (up to 4 MiB once the core's BDP probing has grown them;
                    // 0.7 MiB against the NIO server and 4 MiB against grpcio here) and the sockets'
                    // buffers: the README's bound is 10 MiB.
                    #expect(
                        early * message.count <= 10 << 20,
                        "\(early) of \(total) messages written while the server read nothing"
                    )
                    #expect(try await rpc.value == total * message.count)
                }
            }
        }

        @Test(
            "1 MiB messages each way: the client's flow-control windows are past HTTP/2's 65,535 bytes from its first frames",
            arguments: Stack.allCases
        )
        func flowControlWindows(stack: Stack) async throws {
            try await withBackend(stack) { server in
                let port = Int(server.target.split(separator: ":").last!)!
                let config = testConfig([server.target], poolSize: 1) { $0.compression = false }
                let windows = try await AnnouncedWindows.capture(toPort: port) {
                    try await withPoolManager(["echo": config]) { manager in
                        let client = try manager.client(for: "echo")
                        let message = [UInt8](repeating: 5, count: 1 << 20)
                        let replies = try await client.echoMessages(
                            Array(repeating: message, count: 4),
                            timeout: .seconds(60)
                        )
                        #expect(replies.count == 4 && replies.allSatisfy { $0 == message })
                    }
                }
                // libgrpc 1.51 announces 4 MiB at once (SETTINGS_INITIAL_WINDOW_SIZE 4,194,303 for a
                // stream, a first connection WINDOW_UPDATE of 4,128,768), so a 1 MiB message never
                // waits on HTTP/2's 64 KiB default.
                #expect((windows.initialWindowSizes.first ?? 0) > 65_535, "\(windows.initialWindowSizes)")
                #expect((windows.connectionIncrements.first ?? 0) > 65_535, "\(windows.connectionIncrements)")
            }
        }

        @Test(
            "1 GiB through one bidi stream (1 MiB messages each way, C-core server): resident size flat within 10 MiB",
            .disabled(if: underSanitizer, "a sanitizer's allocator and shadow memory decide the resident size")
        )
        func gibibyteThroughOneStream() async throws {
            try await withCoreServer { server in
                let config = testConfig([server.target], poolSize: 1) { $0.compression = false }
                try await withPoolManager(["echo": config]) { manager in
                    let client = try manager.client(for: "echo")
                    let message = [UInt8](repeating: 3, count: 1 << 20)
                    let total = 1024
                    // The resident size every 128 MiB: what is in flight (the windows, the inbox
                    // and the outbox, each side's message) moves it by a few MiB either way.
                    let sizes = Mutex<[Double]>([])
                    var options = CallOptions.defaults
                    options.timeout = .seconds(300)
                    let echoed = try await client.bidirectionalStreaming(
                        request: StreamingClientRequest(of: [UInt8].self) { writer in
                            for _ in 0..<total { try await writer.write(message) }
                        },
                        descriptor: StreamTests.stream,
                        serializer: RawBytesSerializer(),
                        deserializer: RawBytesDeserializer(),
                        options: options
                    ) { response in
                        var count = 0
                        for try await echo in response.messages {
                            #expect(echo.count == message.count)
                            count += 1
                            if count % 128 == 0 { sizes.withLock { $0.append(residentMiB()) } }
                        }
                        return count
                    }
                    #expect(echoed == total)
                    // Flat: the largest of the second 512 MiB at most 10 MiB over the largest of
                    // the first (a leak of 20 KiB per message would add 10 MiB).
                    let samples = sizes.withLock { $0 }
                    #expect(samples.count == 8)
                    let (first, second) = (samples.prefix(4).max() ?? 0, samples.suffix(4).max() ?? 0)
                    #expect(second - first <= 10, "resident size every 128 MiB echoed: \(samples) MiB")
                }
            }
        }
    }
}
