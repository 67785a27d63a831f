import DemoServices
import Foundation
import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge
import SwiftProtobuf
import Testing

extension IsolatedTests {
    /// The process-wide counters must reach zero, so these run where no other test holds a
    /// channel: in the isolated phase, one at a time.
    @Suite("Nothing of the core outlives the README's usage")
    struct LeakTests {
        @Test(
            "withConnection { STT.Client(wrapping: $0.client) }, then shutdown: no channel, call, runtime or poller left"
        )
        func readmeLeasePattern() async throws {
            try await withDemoServer { server in
                try await Self.readmeUsage(port: server.port)
                try await Self.expectCoreReleased()
            }
        }

        @Test("The same lease pattern against a C-core server")
        func leasePatternOnCoreServer() async throws {
            try await withCoreServer { server in
                let endpoint = try #require(PoolManager.Endpoint(parsing: server.target))
                let manager = try PoolManager(services: ["echo": .init(host: endpoint.host, port: endpoint.port)])
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await manager.run() }
                    let reply = try await manager.withConnection(to: "echo") { connection in
                        try await connection.client.echo([1, 2, 3], timeout: .seconds(10))
                    }
                    #expect(reply == [1, 2, 3])
                    manager.beginGracefulShutdown()
                }
            }
            try await Self.expectCoreReleased()
        }

        @Test(
            "Streams ended every way (completed, cancelled, ended by the server, past their deadline, refused and retried): nothing left"
        )
        func streamsEndedEveryWay() async throws {
            try await withCoreServer { server in
                let endpoint = try #require(PoolManager.Endpoint(parsing: server.target))
                var config = PoolManager.ServiceConfig(host: endpoint.host, port: endpoint.port, poolSize: 2)
                config.retryPolicy.initialBackoff = .milliseconds(10)
                let manager = try PoolManager(services: ["echo": config])
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask { try await manager.run() }
                    let client = try manager.client(for: "echo")
                    #expect(try await client.echoMessages([[1], [2]]) == [[1], [2]])
                    // Cancelled mid-stream.
                    let open = OpenStream(client: client)
                    #expect(try await open.send([3]) == [3])
                    open.cancel()
                    await #expect(throws: (any Error).self) { try await open.end() }
                    // Ended by the server with the request still open; past its deadline.
                    let limited = OpenStream(client: client, metadata: ["echo-limit": "1"])
                    #expect(try await limited.send([4]) == [4])
                    #expect(try await limited.result() == [[4]])
                    let late = OpenStream(client: client, timeout: .milliseconds(300))
                    await #expect(throws: RPCError.self) { try await late.result() }
                    // Refused on every attempt (three, on the default policy).
                    let refused = OpenStream(client: client, metadata: ["echo-status": "14"])
                    await #expect(throws: RPCError.self) { try await refused.end() }
                    manager.beginGracefulShutdown()
                }
            }
            try await Self.expectCoreReleased()
        }

        /// The README's "Basic setup" and "Making gRPC calls", as they stand there.
        static func readmeUsage(port: Int) async throws {
            let audio = Data(count: 3200)
            let manager = try PoolManager(services: [
                "stt": .init(host: "localhost", port: port, poolSize: 3, maxRetries: 3, timeout: .seconds(30))
            ])
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await manager.run() }
                let transcript = try await manager.withConnection(to: "stt") { connection in
                    let stt = STT.Client(wrapping: connection.client)
                    return try await stt.transcribe(.with { $0.audio = audio })
                }
                let stt = STT.Client(wrapping: try manager.client(for: "stt"))
                let again = try await stt.transcribe(.with { $0.audio = audio })
                #expect(transcript.text.hasPrefix("transcript of 3200 bytes"))
                #expect(again.text == transcript.text)
                manager.beginGracefulShutdown()
            }
        }

        /// Every core object is gone: the runtime ran `grpc_shutdown` and its poller exited.
        static func expectCoreReleased() async throws {
            let released = await poll(timeLimit: .seconds(20)) {
                let live = LiveObjects.snapshot()
                return live.channels == 0 && live.calls == 0 && live.runtimes == 0 && live.pollerThreads == 0
            }
            #expect(released, "still live: \(LiveObjects.snapshot())")
            let pollers = threadNames().filter { $0.hasPrefix("grpc-pool-cq-") }
            #expect(pollers.isEmpty, "poller threads: \(pollers)")
        }
    }
}
