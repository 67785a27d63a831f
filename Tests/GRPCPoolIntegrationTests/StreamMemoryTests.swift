import DemoServices
import GRPCCore
import GRPCPool
import Synchronization
import Testing

extension IsolatedTests {
    /// The process's resident size is the measure, so this runs where no other test allocates.
    @Suite("Memory of a long stream")
    struct StreamMemoryTests {
        @Test(
            "1 GiB through one bidi stream (1 MiB messages each way, C-core server): resident size flat within 10 MiB"
        )
        func gibibyteThroughOneStream() async throws {
            try await withCoreServer { server in
                let config = testConfig([server.target], poolSize: 1) { $0.compression = false }
                try await withPoolManager(["echo": config]) { manager in
                    let client = try manager.client(for: "echo")
                    let message = [UInt8](repeating: 3, count: 1 << 20)
                    let total = 1024
                    let warm = 128
                    let sizes = Mutex<(afterWarmUp: Double, atEnd: Double)>((0, 0))
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
                            if count == warm { sizes.withLock { $0.afterWarmUp = residentMiB() } }
                        }
                        sizes.withLock { $0.atEnd = residentMiB() }
                        return count
                    }
                    #expect(echoed == total)
                    let (afterWarmUp, atEnd) = sizes.withLock { $0 }
                    #expect(
                        atEnd - afterWarmUp <= 10,
                        "resident size \(afterWarmUp) MiB after \(warm) MiB echoed, \(atEnd) MiB after \(total) MiB"
                    )
                }
            }
        }
    }
}
