import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge

/// Unary calls the demo server holds for two minutes, until ``cancelAll()``.
final class HeldCalls: Sendable {
    private let pool: ConnectionPool
    private let tasks = Locked<[Task<RPCError.Code?, Never>]>([])

    init(pool: ConnectionPool) { self.pool = pool }

    func start(_ count: Int) {
        let pool = self.pool
        let started = (0..<count).map { _ in
            Task { () -> RPCError.Code? in
                do {
                    _ = try await pool.unary(
                        method: echoUnary,
                        request: [7],
                        metadata: ["echo-delay-ms": "120000"],
                        options: CoreCallOptions(timeout: .seconds(150))
                    )
                    return nil
                } catch let error as RPCError {
                    return error.code
                } catch {
                    return .unknown
                }
            }
        }
        self.tasks.withLock { $0 += started }
    }

    /// Cancels every call without waiting for them to end: for a test that stops early, so that
    /// the pool's graceful shutdown does not wait out the server's delay.
    func cancel() {
        for task in self.tasks.withLock({ $0 }) { task.cancel() }
    }

    /// Cancels every call and returns how each ended (`nil`: it succeeded).
    func cancelAll() async -> [RPCError.Code?] {
        let tasks = self.tasks.withLock { tasks in
            defer { tasks = [] }
            return tasks
        }
        for task in tasks { task.cancel() }
        var codes: [RPCError.Code?] = []
        for task in tasks { codes.append(await value(of: task, timeLimit: .seconds(30))) }
        return codes
    }
}
