import DemoServices
import Foundation
import GRPCCore
import GRPCPoolCoreBridge
import Testing

@Suite("Core resources")
struct ResourceTests {
    @Test("10,000 sequential unary calls leave no live call, buffer or thread behind")
    func noLeaks() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            // Warm up: the first calls start the core's own threads.
            for _ in 0..<200 { _ = try await channel.unary(method: "/bench.Echo/Unary", request: [1, 2, 3]) }
            let threadsBefore = processThreadCount()
            let pollersBefore = LiveObjects.pollerThreads.value

            for index in 0..<10_000 {
                let request = [UInt8(truncatingIfNeeded: index), 1, 2]
                let response = try await channel.unary(method: "/bench.Echo/Unary", request: request)
                #expect(response.message == request)
            }

            #expect(await poll { channel.liveCalls == 0 })
            #expect(LiveObjects.pollerThreads.value == pollersBefore)
            // Parallel tests start and stop their own servers, so allow for their threads;
            // a thread per call would add thousands.
            let threadsAfter = processThreadCount()
            #expect(threadsAfter <= threadsBefore + 8, "threads: \(threadsBefore) → \(threadsAfter)")
        }
    }

    @Test("Failed and cancelled calls release their core objects too")
    func failuresRelease() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            for _ in 0..<200 {
                _ = try? await channel.unary(method: "/bench.Echo/Unary", request: [1], metadata: ["echo-status": "13"])
                _ = try? await channel.unary(
                    method: "/bench.Echo/Unary",
                    request: [1],
                    metadata: ["echo-delay-ms": "1000"],
                    options: CoreCallOptions(timeout: .milliseconds(1))
                )
                try? await channel.withCall(method: "/bench.Echo/Stream") { call in
                    _ = await call.send([1])  // leaves before the end: withCall cancels it
                }
            }
            #expect(await poll { channel.liveCalls == 0 })
        }
    }

    @Test("The runtime's poller is a named thread and there is one per runtime")
    func pollerThread() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            _ = try await channel.unary(method: "/bench.Echo/Unary", request: [1])
            // The channel keeps its runtime, and so the poller, alive: keep it to the end (Swift may
            // release it right after its last use, and the poller then exits).
            withExtendedLifetime(channel) {
                #expect(LiveObjects.pollerThreads.value >= 1)
                let names = threadNames()
                #expect(names.contains { $0.hasPrefix("grpc-pool-cq-") }, "threads: \(names)")
            }
        }
    }
}

func threadNames() -> [String] {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.compactMap { try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8) }
        .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
}
