import DemoServices
import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge
import Testing

extension IsolatedTests {
    // Run alone: "at once" is measured in milliseconds, and at the start of the parallel phase
    // some 130 tests on two cores make any task wait longer than that.
    /// A refusal by the pool (none healthy under `.failFast`, the queue full, shutdown) reaches the
    /// caller at once, as an `RPCError`, through every way of calling — with retries on (the
    /// default) and a 3 s deadline, as real calls have. grpc-swift's retrying executor used to hold
    /// such a refusal until the deadline.
    @Suite("Refusals arrive at once, as RPCError, through every entry point")
    struct RefusalTests {
        static let deadline = Duration.seconds(3)
        /// What "at once" means here: far below the deadline, with room for a loaded test machine.
        static let atOnce = Duration.milliseconds(100)

        /// The three ways application code calls through the pool.
        enum EntryPoint: String, CaseIterable {
            /// `manager.client(for:)`, balanced per RPC.
            case poolClient
            /// `manager.withConnection { $0.client }`, a leased connection's client.
            case leasedClient
            /// `GRPCClient(transport: pool.makeTransport())`, a client of the application's own.
            case ownClient

            func call(_ manager: PoolManager) async throws {
                switch self {
                case .poolClient:
                    _ = try await manager.client(for: "echo").echo([1], timeout: RefusalTests.deadline)
                case .leasedClient:
                    _ = try await manager.withConnection(to: "echo") { connection in
                        try await connection.client.echo([1], timeout: RefusalTests.deadline)
                    }
                case .ownClient:
                    let client = GRPCClient(transport: try manager.pool(for: "echo").makeTransport())
                    _ = try await client.echo([1], timeout: RefusalTests.deadline)
                }
            }
        }

        /// The quickest of three refusals through `entry`, and the last error. (The quickest, so that
        /// a scheduling hiccup of the loaded test machine is not taken for a wait: a refusal held
        /// until the deadline takes 3 s every time.)
        static func refusal(
            _ entry: EntryPoint,
            _ manager: PoolManager
        ) async -> (error: RPCError?, other: (any Error)?, elapsed: Duration) {
            var best = Duration.seconds(3600)
            var last: (RPCError?, (any Error)?) = (nil, nil)
            for _ in 0..<3 {
                let start = ContinuousClock.now
                do {
                    try await entry.call(manager)
                    last = (nil, nil)
                } catch let error as RPCError {
                    last = (error, nil)
                } catch {
                    last = (nil, error)
                }
                best = min(best, ContinuousClock.now - start)
            }
            return (last.0, last.1, best)
        }

        /// Every entry point refuses at once with an `RPCError` of `code` whose cause is the pool's `cause`.
        static func expectRefusedAtOnce(_ manager: PoolManager, code: RPCError.Code, cause: GRPCPoolError.Code) async {
            for entry in EntryPoint.allCases {
                let (error, other, elapsed) = await Self.refusal(entry, manager)
                #expect(other == nil, "\(entry) threw a non-RPCError: \(String(describing: other))")
                #expect(error?.code == code, "\(entry): \(String(describing: error))")
                #expect((error?.cause as? GRPCPoolError)?.code == cause, "\(entry)")
                #expect(elapsed < Self.atOnce, "\(entry): \(elapsed)")
            }
        }

        @Test("failFast with no healthy connection: UNAVAILABLE at once", arguments: Stack.allCases)
        func failFast(_ stack: Stack) async throws {
            try await withBackend(stack) { server in
                let config = testConfig([server.target], poolSize: 2) { $0.whenNoneHealthy = .failFast }
                #expect(config.enableRetries)
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    await server.halt()
                    #expect(await poll { pool.metrics().healthyConnections == 0 })
                    await Self.expectRefusedAtOnce(manager, code: .unavailable, cause: .noHealthyConnection)
                }
            }
        }

        @Test("Every connection full and maxQueuedCalls reached: RESOURCE_EXHAUSTED at once", arguments: Stack.allCases)
        func shed(_ stack: Stack) async throws {
            try await withBackend(stack) { server in
                let config = testConfig([server.target], poolSize: 1) { config in
                    config.streamCapacity = 2  // room for 1 call
                    config.maxQueuedCalls = 0
                }
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    let blocker = Task {
                        try await pool.unary(
                            method: echoUnary,
                            request: [0],
                            metadata: ["echo-delay-ms": "20000"],
                            options: .init(timeout: .seconds(30))
                        )
                    }
                    defer { blocker.cancel() }
                    #expect(await poll { pool.metrics().inFlight == 1 })
                    await Self.expectRefusedAtOnce(manager, code: .resourceExhausted, cause: .saturated)
                    #expect(pool.metrics().rejectedRequests >= 3 * EntryPoint.allCases.count)
                }
            }
        }

        @Test(
            "After shutdown: FAILED_PRECONDITION, an RPCError, at once; a kept connection client too",
            arguments: Stack.allCases
        )
        func shutdown(_ stack: Stack) async throws {
            try await withBackend(stack) { server in
                let manager = try PoolManager(
                    services: ["echo": testConfig([server.target], poolSize: 2)],
                    logger: quietLogger
                )
                let running = Task { try await manager.run() }
                let pool = try manager.pool(for: "echo")
                #expect(await poll { pool.metrics().healthyConnections == 2 })
                let poolClient = try manager.client(for: "echo")
                #expect(try await poolClient.echo([7], timeout: Self.deadline) == [7])
                let kept = try await manager.withConnection(to: "echo") { connection in
                    let reply = try await connection.client.echo([8], timeout: Self.deadline)
                    #expect(reply == [8])
                    return connection.client
                }
                manager.beginGracefulShutdown()
                try await running.value

                await Self.expectRefusedAtOnce(manager, code: .failedPrecondition, cause: .shutDown)
                let start = ContinuousClock.now
                let error = await #expect(throws: RPCError.self) { try await kept.echo([9], timeout: Self.deadline) }
                #expect(error?.code == .failedPrecondition)
                #expect(ContinuousClock.now - start < Self.atOnce)
            }
        }
    }
}
