import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge
import Synchronization

/// Counts outcomes of a steady load, independently of the pool's own metrics.
final class LoadCounter: Sendable {
    private let state = Locked<(successes: Int, failures: [RPCError.Code])>((0, []))
    func success() { state.withLock { $0.successes += 1 } }
    func failure(_ code: RPCError.Code) { state.withLock { $0.failures.append(code) } }
    var successes: Int { state.withLock { $0.successes } }
    var failures: [RPCError.Code] { state.withLock { $0.failures } }
}

/// A flag that a load loop checks.
final class StopFlag: Sendable {
    private let value = Atomic(false)
    func set() { value.store(true, ordering: .relaxed) }
    var isSet: Bool { value.load(ordering: .relaxed) }
}

/// Runs `callers` loops of `call` until `stop` is set, counting every outcome in `counter`: a
/// success when `call` returns `true`, DATA_LOSS when it returns `false` (a wrong reply), and the
/// `RPCError`'s code (UNKNOWN for any other error) when it throws. Each loop pauses `pause`
/// between calls; a pause cut short counts as UNKNOWN.
func runLoad(
    callers: Int,
    pause: Duration = .zero,
    counter: LoadCounter,
    stop: StopFlag,
    _ call: @escaping @Sendable (_ caller: Int) async throws -> Bool
) async {
    await withTaskGroup(of: Void.self) { group in
        for caller in 0..<callers {
            group.addTask {
                while !stop.isSet {
                    do {
                        if try await call(caller) { counter.success() } else { counter.failure(.dataLoss) }
                        if pause > .zero { try await Task.sleep(for: pause) }
                    } catch let error as RPCError {
                        counter.failure(error.code)
                    } catch {
                        counter.failure(.unknown)
                    }
                }
            }
        }
    }
}

/// Runs `callers` loops of unary calls on `pool` until `stop` is set.
func steadyLoad(pool: ConnectionPool, callers: Int, counter: LoadCounter, stop: StopFlag) async {
    await runLoad(callers: callers, counter: counter, stop: stop) { _ in
        _ = try await pool.unary(method: echoUnary, request: [1])
        return true
    }
}
