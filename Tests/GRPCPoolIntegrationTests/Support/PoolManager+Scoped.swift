import DemoServices
import GRPCCore
import GRPCPool
import Logging
import Testing

/// A service config tuned for tests: fast backoff, short checks, small timeouts.
func testConfig(
    _ targets: [String],
    poolSize: Int = 3,
    configure: (inout PoolManager.ServiceConfig) -> Void = { _ in }
) -> PoolManager.ServiceConfig {
    let endpoints = targets.map { PoolManager.Endpoint(parsing: $0)! }
    var config = PoolManager.ServiceConfig(
        endpoints: endpoints,
        poolSize: poolSize,
        retryDelay: .milliseconds(100),
        timeout: .seconds(5)
    )
    config.maxRetryDelay = .milliseconds(400)
    config.healthCheck.interval = .milliseconds(300)
    config.healthCheck.timeout = .seconds(2)
    configure(&config)
    return config
}

/// Runs `body` with a running ``PoolManager`` whose connections are all healthy, then shuts it
/// down gracefully and waits for `run()` to return.
@discardableResult
func withPoolManager<Result: Sendable>(
    _ services: [ServiceID: PoolManager.ServiceConfig],
    waitForHealthy: Bool = true,
    observers: [any PoolObserver] = [],
    clock: any PoolClock = ContinuousPoolClock(),
    _ body: (PoolManager) async throws -> Result
) async throws -> Result {
    let manager = try PoolManager(services: services, logger: quietLogger, observers: observers, clock: clock)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await manager.run() }
        do {
            if waitForHealthy {
                // Generous: at the parallel phase's start the in-process NIO servers (a debug
                // build, two event-loop threads for all of them) can miss a 5 s connect attempt.
                let healthy = await manager.waitUntilHealthy(timeLimit: .seconds(30))
                try #require(healthy, "pools did not become healthy: \(manager.metrics())")
            }
            let result = try await body(manager)
            manager.beginGracefulShutdown()
            try await group.waitForAll()
            return result
        } catch {
            manager.beginGracefulShutdown()
            try? await group.waitForAll()
            throw error
        }
    }
}

let echoUnary = "/bench.Echo/Unary"

extension GRPCClient {
    /// `bench.Echo/Unary` on raw bytes, as a generated stub would call it: the reply's bytes.
    func echo(_ payload: [UInt8]) async throws -> [UInt8] {
        try await self.unary(
            request: ClientRequest(message: payload),
            descriptor: MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Unary", type: .unary),
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: .defaults
        ) { try $0.message }
    }
}

/// The pool's logger in tests: warnings only (the tests check their own outcomes; the log test
/// uses its own in-memory handler).
let quietLogger: Logger = {
    var logger = Logger(label: "grpc.pool")
    logger.logLevel = .warning
    return logger
}()
