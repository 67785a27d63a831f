import DemoServices
import Foundation
import GRPCCore
import GRPCPool
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import SwiftProtobuf
import Testing

/// The README's code, against real servers, so that its snippets cannot rot. Each section's code
/// is copied here as it stands there (only the ports come from the local servers).
@Suite("README examples")
struct ReadmeExamplesTests {
    @Test("Basic setup, making calls, monitoring and metrics")
    func usage() async throws {
        try await withDemoServer { s1 in
            try await withDemoServer { s2 in
                try await withDemoServer { s3 in
                    let audio = Data(count: 3200)
                    // ### Basic setup
                    let manager = try PoolManager(services: [
                        "stt": .init(
                            host: "localhost",
                            port: s1.port,
                            poolSize: 3,
                            maxRetries: 3,
                            timeout: .seconds(30)
                        ),
                        "nlp": .init(host: "localhost", port: s2.port, poolSize: 2),
                        "summary": .init(host: "localhost", port: s3.port, poolSize: 2),
                    ])
                    try await withThrowingDiscardingTaskGroup { group in
                        group.addTask { try await manager.run() }

                        // ### Making gRPC calls
                        let transcript = try await manager.withConnection(to: "stt") { connection in
                            let stt = STT.Client(wrapping: connection.client)
                            return try await stt.transcribe(.with { $0.audio = audio })
                        }
                        let nlp = NLP.Client(wrapping: try manager.client(for: "nlp"))
                        let analysis = try await nlp.analyze(.with { $0.text = "a good pool" })
                        #expect(transcript.text.hasPrefix("transcript of 3200 bytes"))
                        #expect(analysis.tokens == ["a", "good", "pool"])

                        // ### Monitoring and metrics
                        let metrics = manager.metrics()
                        print("STT pool: \(metrics["stt"]!)")
                        let health = await manager.healthCheck()
                        print("STT healthy: \(health["stt"]!)")
                        let pool = try manager.pool(for: "stt")
                        let m = pool.metrics()
                        print("Total requests: \(m.totalRequests)")
                        print("Success rate: \(String(format: "%.2f", m.successRate * 100))%")
                        print("Avg response time: \(String(format: "%.2f", m.averageResponseTimeMilliseconds)) ms")
                        print("p50 / p99: \(m.p50ResponseTime) / \(m.p99ResponseTime)")
                        for connection in m.connections {
                            print(
                                connection.index,
                                connection.endpoint,
                                connection.state,
                                connection.isHealthy,
                                connection.reconnects
                            )
                        }
                        #expect(m.totalRequests == 1)
                        #expect(health["stt"] == true && health["nlp"] == true)
                        // summary has had no call yet: it is healthy once its connections are up.
                        #expect(
                            await poll { await manager.healthCheck() == ["stt": true, "nlp": true, "summary": true] }
                        )

                        manager.beginGracefulShutdown()
                    }
                }
            }
        }
    }

    @Test("A ServiceGroup's graceful shutdown drains and stops the pool manager")
    func serviceGroup() async throws {
        try await withDemoServer { server in
            let services: [ServiceID: PoolManager.ServiceConfig] = ["stt": .init(host: "127.0.0.1", port: server.port)]
            let logger = Logger(label: "test")
            try await testGracefulShutdown { trigger in
                let manager = try PoolManager(services: services, logger: logger)
                let group = ServiceGroup(services: [manager], gracefulShutdownSignals: [], logger: logger)
                try await withThrowingDiscardingTaskGroup { tasks in
                    tasks.addTask { try await group.run() }
                    let stt = STT.Client(wrapping: try manager.client(for: "stt"))
                    let reply = try await stt.transcribe(.with { $0.audio = Data(count: 1) })
                    #expect(reply.text.hasPrefix("transcript of 1 bytes"))
                    trigger.triggerGracefulShutdown()
                }
                let pool = try manager.pool(for: "stt")
                #expect(pool.connections.allSatisfy { $0.state == .shutdown })
            }
        }
    }
}
