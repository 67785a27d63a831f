import DemoServices
import Foundation
import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge
import InteropCases
import SwiftProtobuf
import Testing

@Suite("grpc-swift-2 ClientTransport over the pool")
struct TransportTests {
    @Test("Interop case through the pool-wide transport", arguments: InteropCase.allCases)
    func interopThroughPool(testCase: InteropCase) async throws {
        try await withDemoServer { server in
            try await withPoolManager(["interop": testConfig([server.target], poolSize: 2)]) { manager in
                try await testCase.run(using: try manager.client(for: "interop"))
            }
        }
    }

    @Test(
        "Interop case through one pooled connection's client",
        arguments: [
            InteropCase.largeUnary, .pingPong, .customMetadata, .statusCodeAndMessage, .timeoutOnSleepingServer,
        ]
    )
    func interopThroughConnection(testCase: InteropCase) async throws {
        try await withDemoServer { server in
            try await withPoolManager(["interop": testConfig([server.target], poolSize: 1)]) { manager in
                try await manager.withConnection(to: "interop") { connection in
                    try await testCase.run(using: connection.client)
                }
            }
        }
    }

    @Test("The seed's usage: stubs inside withConnection and on the pool-wide client, counted in metrics")
    func seedUsage() async throws {
        try await withDemoServer { sttServer in
            try await withDemoServer { nlpServer in
                try await withDemoServer { summaryServer in
                    let services: [ServiceID: PoolManager.ServiceConfig] = [
                        "stt": testConfig([sttServer.target], poolSize: 3),
                        "nlp": testConfig([nlpServer.target], poolSize: 2),
                        "summary": testConfig([summaryServer.target], poolSize: 2),
                    ]
                    try await withPoolManager(services) { manager in
                        // async with pool_manager.get_connection(ServiceType.STT) as conn: …
                        let transcript = try await manager.withConnection(to: "stt") { connection in
                            let stt = STT.Client(wrapping: connection.client)
                            return try await stt.transcribe(.with { $0.audio = Data(count: 1600) })
                        }
                        #expect(transcript.text == "transcript of 1600 bytes (en)")

                        // Balanced per RPC.
                        let nlp = NLP.Client(wrapping: try manager.client(for: "nlp"))
                        for _ in 0..<10 {
                            let analysis = try await nlp.analyze(.with { $0.text = "good day, good pool" })
                            #expect(analysis.tokens == ["good", "day", "good", "pool"])
                        }
                        let summary = Summary.Client(wrapping: try manager.client(for: "summary"))
                        let sentences = try await summary.summarizeStream(
                            .with {
                                $0.text = "One. Two. Three."
                                $0.maxSentences = 2
                            }
                        ) { response in
                            var sentences: [String] = []
                            for try await message in response.messages { sentences.append(message.summary) }
                            return sentences
                        }
                        #expect(sentences == ["One.", "Two."])
                        // One failing call on stt: a service the server does not have.
                        await #expect(throws: RPCError.self) {
                            try await Grpc_Testing_UnimplementedService.Client(wrapping: try manager.client(for: "stt"))
                                .unimplementedCall(Grpc_Testing_Empty())
                        }

                        let metrics = manager.metrics()
                        #expect(metrics["stt"]?.totalRequests == 2)
                        #expect(metrics["stt"]?.successRate == 0.5)
                        #expect(metrics["nlp"]?.totalRequests == 10)
                        #expect(metrics["nlp"]?.successRate == 1)
                        #expect(metrics["nlp"]?.connections.map(\.totalRequests) == [5, 5])
                        #expect(metrics["summary"]?.totalRequests == 1)
                    }
                }
            }
        }
    }

    @Test("Client streaming through the pool-wide client delivers every message, the first one large")
    func clientStreamingDeliversEveryMessage() async throws {
        try await withDemoServer { server in
            var config = testConfig([server.target], poolSize: 2)
            config.compression = false  // so the first message really is 1 MiB on the wire
            try await withPoolManager(["echo": config]) { manager in
                let client = try manager.client(for: "echo")
                // The first message goes out with the call's start; it is still in flight (flow
                // control) when GRPCCore writes the next ones, which must wait for it, not be lost.
                let messages: [[UInt8]] = [
                    [UInt8](repeating: 1, count: 1 << 20), [2, 2, 2], [UInt8](repeating: 3, count: 1834), [4],
                ]
                let expected = messages.reduce(into: [UInt8]()) { $0 += $1 }
                for round in 0..<5 {
                    let reply = try await client.clientStreaming(
                        request: StreamingClientRequest(of: [UInt8].self) { writer in
                            for message in messages { try await writer.write(message) }
                        },
                        descriptor: MethodDescriptor(
                            fullyQualifiedService: "bench.Echo",
                            method: "ClientStream",
                            type: .clientStreaming
                        ),
                        serializer: RawBytesSerializer(),
                        deserializer: RawBytesDeserializer(),
                        options: .defaults
                    ) { try $0.message }
                    let intact = reply == expected  // a Bool: the arrays are too long to print
                    #expect(intact, "round \(round): \(reply.count) bytes of \(expected.count)")
                }
            }
        }
    }

    @Test("A retried call sends the same message again (compression on), one pool attempt per try")
    func retriedMessageIntact() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 2)  // gzip and retries: the defaults
            #expect(config.compression && config.enableRetries)
            try await withPoolManager(["echo": config]) { manager in
                let pool = try manager.pool(for: "echo")
                let payload = [UInt8](repeating: 7, count: 512)
                server.failNextCalls(2, with: .init(code: .unavailable, message: "try again"))
                let reply = try await manager.client(for: "echo").echo(payload)
                // libgrpc 1.51's own retries resent the gzip bytes as the message (grpc/grpc#37742).
                #expect(reply == payload, "got \(reply.count) bytes: \(reply.prefix(8))")
                #expect(server.requestCount == 3)
                let metrics = pool.metrics()
                #expect(metrics.failedRequests == 2, "each attempt is a call on a connection")
                #expect(metrics.successfulRequests == 1)
            }
        }
    }

    @Test("The pool retries a unary RPC itself, on the next pick: a failing endpoint's calls end on the other")
    func unaryRetryPicksAgain() async throws {
        try await withDemoServers(2) { servers in
            let config = testConfig(servers.map(\.target), poolSize: 2) { $0.outlierDetection = nil }
            try await withPoolManager(["echo": config]) { manager in
                let client = try manager.client(for: "echo")
                // GRPCCore gets no retry policy for unary methods: the transport retries them.
                let unary = MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Unary", type: .unary)
                let transport = try manager.pool(for: "echo").makeTransport()
                #expect(transport.config(forMethod: unary)?.executionPolicy == nil)
                servers[0].failNextCalls(1000, with: .init(code: .unavailable, message: "try again"))
                for _ in 0..<10 {
                    #expect(try await client.echo([1, 2, 3], timeout: .seconds(20)) == [1, 2, 3])
                }
                // Round robin: an attempt on the failing endpoint is followed by one on the other.
                #expect(servers[1].requestCount == 10)
                #expect(servers[0].requestCount >= 4)
                let metrics = try manager.pool(for: "echo").metrics()
                #expect(metrics.failedRequests == servers[0].requestCount, "each attempt is a call on a connection")
                #expect(metrics.successfulRequests == 10)
            }
        }
    }

    @Test("A unary retry that could not start before the deadline is not made: the failure comes at once")
    func unaryRetryWithinDeadline() async throws {
        try await withDemoServer { server in
            var config = testConfig([server.target], poolSize: 1)
            config.retryPolicy.initialBackoff = .seconds(1000)
            config.retryPolicy.maxBackoff = .seconds(1000)
            try await withPoolManager(["echo": config]) { manager in
                server.failNextCalls(1000, with: .init(code: .unavailable, message: "try again"))
                // A retry's backoff is drawn from [0, 1000 s): almost always past the deadline; one
                // that is not fails as the first did. Either way UNAVAILABLE, the server's failure,
                // not GRPCCore's DEADLINE_EXCEEDED at the deadline.
                let error = await #expect(throws: RPCError.self) {
                    // A deadline well past a loaded machine's first attempt, far below the backoff.
                    try await manager.client(for: "echo").echo([1], timeout: .seconds(30))
                }
                #expect(error?.code == .unavailable, "\(String(describing: error))")
                #expect(error?.message.contains("try again") == true)
            }
        }
    }

    @Test("A call's deadline reaches the server once, as the core's grpc-timeout")
    func deadlineSentOnce() async throws {
        try await withDemoServer { server in
            try await withPoolManager(["echo": testConfig([server.target], poolSize: 1)]) { manager in
                _ = try await manager.client(for: "echo").echo([1], timeout: .seconds(7))
                let timeouts = Array(server.lastRequestMetadata[stringValues: "grpc-timeout"])
                #expect(timeouts.count == 1, "\(server.lastRequestMetadata)")
                // Between 6 and 7 seconds, in the unit the core chose.
                #expect(timeouts.first.map { ["7S", "6S"].contains($0) || $0.hasSuffix("m") } == true)
            }
        }
    }

    @Test("Under many retries, every reply is its own request's echo")
    func retriesKeepMessagesIntact() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 3)  // gzip and retries on
            try await withPoolManager(["echo": config]) { manager in
                let client = try manager.client(for: "echo")
                let stop = StopFlag()
                // Every few milliseconds the next two calls fail with UNAVAILABLE: retried.
                let faults = Task {
                    while !stop.isSet {
                        server.failNextCalls(2, with: .init(code: .unavailable, message: "try again"))
                        try? await Task.sleep(for: .milliseconds(3))
                    }
                }
                let wrong = Collected<String>()
                let failures = Collected<RPCError.Code>()
                await withTaskGroup(of: Void.self) { group in
                    for caller in 0..<32 {
                        group.addTask {
                            for call in 0..<60 {
                                let payload =
                                    [UInt8(caller), UInt8(call % 256), UInt8(call / 256)]
                                    + [UInt8](repeating: 9, count: 29)
                                do {
                                    let reply = try await client.echo(payload)
                                    if reply != payload {
                                        wrong.append(
                                            "sent \(payload.prefix(3)) got \(reply.count) bytes \(reply.prefix(8))"
                                        )
                                    }
                                } catch let error as RPCError {
                                    failures.append(error.code)
                                } catch {
                                    failures.append(.unknown)
                                }
                            }
                        }
                    }
                }
                stop.set()
                await faults.value
                #expect(wrong.values.isEmpty, "\(wrong.values.prefix(5))")
                // Three attempts against at most two planted failures in a row: failures are rare
                // and only UNAVAILABLE.
                #expect(failures.values.allSatisfy { $0 == .unavailable }, "\(failures.values.prefix(5))")
            }
        }
    }

    @Test("With retries, calls on the pool-wide client survive one connection dying mid-load")
    func failoverUnderLoad() async throws {
        try await withDemoServer { a in
            try await withDemoServer { b in
                let config = testConfig([a.target, b.target], poolSize: 4)
                try await withPoolManager(["stt": config]) { manager in
                    let stt = STT.Client(wrapping: try manager.client(for: "stt"))
                    let counter = LoadCounter()
                    let stop = StopFlag()
                    let load = Task {
                        await runLoad(callers: 8, counter: counter, stop: stop) { _ in
                            _ = try await stt.transcribe(.with { $0.audio = Data(count: 10) })
                            return true
                        }
                    }
                    #expect(await poll { counter.successes > 200 })
                    await b.stop()
                    let atStop = counter.successes
                    #expect(await poll { counter.successes > atStop + 500 })
                    stop.set()
                    await load.value
                    #expect(counter.failures.isEmpty, "failures: \(counter.failures)")
                    let pool = try manager.pool(for: "stt")
                    #expect(pool.metrics().healthyConnections == 2)
                }
            }
        }
    }

    @Test("After graceful shutdown the pool-wide client refuses RPCs with FAILED_PRECONDITION")
    func shutdownRefuses() async throws {
        try await withDemoServer { server in
            let manager = try PoolManager(
                services: ["stt": testConfig([server.target], poolSize: 1)],
                logger: quietLogger
            )
            let running = Task { try await manager.run() }
            let pool = try manager.pool(for: "stt")
            #expect(await poll { pool.metrics().healthyConnections == 1 })
            let transport = ConnectionPoolTransportProbe(pool: pool)
            manager.beginGracefulShutdown()
            try await running.value
            let error = await #expect(throws: RPCError.self) { try await transport.call() }
            #expect(error?.code == .failedPrecondition)
        }
    }
}

/// Calls the pool's transport directly (the GRPCClient would report its own shutdown first).
struct ConnectionPoolTransportProbe {
    let pool: ConnectionPool
    func call() async throws {
        let client = GRPCClient(transport: pool.makeTransport())
        _ = try await STT.Client(wrapping: client).transcribe(TranscribeRequest())
    }
}

/// Values appended from many tasks.
final class Collected<Value: Sendable>: Sendable {
    private let storage = Locked<[Value]>([])
    func append(_ value: Value) { self.storage.withLock { $0.append(value) } }
    var values: [Value] { self.storage.withLock { $0 } }
}
