import DemoServices
import Foundation
import GRPCCore
import GRPCPool

/// The adaptive pool's rows of `grpc-pool bench`: what happens to calls when a connection stalls,
/// when the load steps up and down, when a backend is added behind an L4 balancer, and when every
/// connection is full. Their figures are outcomes (failed calls, sizes, shares, shed calls) more
/// than speeds.
enum AdaptiveBench {
    static let method = BenchClients.unaryPath
    static let payload = [UInt8](repeating: 7, count: 32)

    /// Runs `body` with a running pool for `config`, healthy, and shuts it down afterwards.
    static func withPool<Result>(
        _ config: PoolManager.ServiceConfig,
        _ body: (ConnectionPool) async throws -> Result
    ) async throws -> Result {
        let manager = try PoolManager(services: ["bench": config], logger: .cli(verbose: false))
        let pool = try manager.pool(for: "bench")
        let running = Task { try await manager.run() }
        do {
            _ = await pool.waitUntilHealthy(timeLimit: .seconds(10))
            let result = try await body(pool)
            manager.beginGracefulShutdown()
            _ = await running.result
            return result
        } catch {
            manager.beginGracefulShutdown()
            _ = await running.result
            throw error
        }
    }

    /// Closed-loop callers on `pool` until `stop` is set, counting outcomes.
    static func load(
        _ pool: ConnectionPool,
        callers: Int,
        timeout: Duration = .seconds(5),
        tally: Tally,
        stop: StopSignal
    ) async {
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<callers {
                group.addTask {
                    while !stop.isSet {
                        do {
                            _ = try await pool.unary(method: method, request: payload, timeout: timeout)
                            tally.ok.increment()
                        } catch let error as RPCError where error.code == .resourceExhausted {
                            tally.shed.increment()
                            // A shed call fails without suspending: back off a moment, as a real
                            // client would, or the callers spin on the cooperative pool's threads.
                            try? await Task.sleep(for: .milliseconds(1))
                        } catch {
                            tally.failed.increment()
                        }
                    }
                }
            }
        }
    }

    final class Tally: Sendable {
        let ok = SharedCounter()
        let failed = SharedCounter()
        let shed = SharedCounter()
    }

    /// One connection of two stalls (a black-hole proxy): how long until it is ejected, and how
    /// many calls fail before and after.
    static func stalled(backends: [ServerProcess], say: (String) -> Void) async throws -> [String: Any] {
        let proxy = TCPProxy(targetPort: backends[0].port)
        try await proxy.start()
        defer { Task { await proxy.stop() } }
        var config = PoolManager.ServiceConfig(
            endpoints: [.init(host: "127.0.0.1", port: proxy.port), .init(host: "127.0.0.1", port: backends[1].port)],
            poolSize: 2
        )
        config.enableRetries = false
        config.keepaliveTime = .seconds(60)
        config.keepaliveTimeout = .seconds(20)
        config.outlierDetection = .init(consecutiveFailures: 3, ejectionTime: .seconds(30))
        return try await withPool(config) { pool in
            let tally = Tally()
            let stop = StopSignal()
            async let running: Void = load(pool, callers: 16, timeout: .seconds(1), tally: tally, stop: stop)
            try await Task.sleep(for: .seconds(1))
            let stalledAt = ContinuousClock.now
            proxy.mode = .blackHole
            let ejected = await pool.waitUntil(timeLimit: .seconds(10)) { $0.connections[0].isEjected }
            let ejectTime = (ContinuousClock.now - stalledAt).seconds
            // The calls already on the stalled connection end at their 1 s deadline.
            try await Task.sleep(for: .milliseconds(1200))
            let (okBefore, failedBefore) = (tally.ok.value, tally.failed.value)
            try await Task.sleep(for: .seconds(3))
            let (okAfter, failedAfter) = (tally.ok.value - okBefore, tally.failed.value - failedBefore)
            stop.set()
            await running
            let line = String(
                format: "stalled 1 of 2: ejected %@ after %.2f s; %d calls failed before, %d of %d after",
                ejected ? "yes" : "NO",
                ejectTime,
                failedBefore,
                failedAfter,
                okAfter + failedAfter
            )
            say(line)
            return [
                "workload": "stalled 1 of 2", "ejected": ejected, "eject_s": ejectTime,
                "failed_before_ejection": failedBefore, "failed_after_ejection": failedAfter,
                "calls_after_ejection": okAfter + failedAfter,
            ]
        }
    }

    /// A load step from 16 to 512 calls at once and back to 4, on a pool sized 2…8.
    static func loadStep(backend: ServerProcess, say: (String) -> Void) async throws -> [String: Any] {
        var config = PoolManager.ServiceConfig(endpoints: [.init(host: "127.0.0.1", port: backend.port)], poolSize: 2)
        config.enableRetries = false
        config.maxConnections = 8
        config.scaling = .init(
            targetInFlight: 4...16,
            interval: .milliseconds(250),
            scaleUpCooldown: .milliseconds(500),
            scaleDownReadings: 4
        )
        return try await withPool(config) { pool in
            let tally = Tally()
            let (base, step, burst) = (StopSignal(), StopSignal(), StopSignal())
            async let baseLoad: Void = load(pool, callers: 4, tally: tally, stop: base)
            async let stepLoad: Void = load(pool, callers: 12, tally: tally, stop: step)
            try await Task.sleep(for: .seconds(1))
            let sizeAt16 = pool.metrics().poolSize
            let burstStart = ContinuousClock.now
            async let burstLoad: Void = load(pool, callers: 496, tally: tally, stop: burst)
            let grew = await pool.waitUntil(timeLimit: .seconds(10)) { $0.metrics().poolSize == 8 }
            let growTime = (ContinuousClock.now - burstStart).seconds
            try await Task.sleep(for: .seconds(2))
            burst.set()
            step.set()
            await burstLoad
            await stepLoad
            let dropStart = ContinuousClock.now
            let shrank = await pool.waitUntil(timeLimit: .seconds(15)) { $0.metrics().poolSize == 2 }
            let shrinkTime = (ContinuousClock.now - dropStart).seconds
            base.set()
            await baseLoad
            let line = String(
                format:
                    "load step 16→512→4: size %d at 16, 8 %@ after %.2f s, back to 2 %@ after %.2f s; %d ok, %d failed",
                sizeAt16,
                grew ? "reached" : "NOT reached",
                growTime,
                shrank ? "" : "NOT",
                shrinkTime,
                tally.ok.value,
                tally.failed.value + tally.shed.value
            )
            say(line)
            return [
                "workload": "load step 16-512-4", "size_at_16": sizeAt16, "reached_max": grew, "grow_s": growTime,
                "back_to_min": shrank, "shrink_s": shrinkTime, "ok": tally.ok.value,
                "failed": tally.failed.value + tally.shed.value,
            ]
        }
    }

    /// A backend added behind an L4 balancer (a proxy spreading new connections): its share of
    /// the calls after two max-age periods.
    static func newBackend(say: (String) -> Void) async throws -> [String: Any] {
        let backends = (0..<2).map { _ in DemoServer() }
        for backend in backends { try await backend.start() }
        let balancer = TCPProxy(targetPort: backends[0].port)
        try await balancer.start()
        defer {
            Task {
                await balancer.stop()
                for backend in backends { await backend.stop() }
            }
        }
        let age = Duration.seconds(1)
        var config = PoolManager.ServiceConfig(endpoints: [.init(host: "127.0.0.1", port: balancer.port)], poolSize: 4)
        config.enableRetries = false
        config.maxConnectionAge = age
        return try await withPool(config) { pool in
            let tally = Tally()
            let stop = StopSignal()
            async let running: Void = load(pool, callers: 16, tally: tally, stop: stop)
            try await Task.sleep(for: .seconds(1))
            balancer.addBackend(port: backends[1].port)
            try await Task.sleep(for: age * 2.2)
            for backend in backends { backend.resetCounters() }
            try await Task.sleep(for: .seconds(2))
            let (old, new) = (backends[0].requestCount, backends[1].requestCount)
            stop.set()
            await running
            let share = Double(new) / Double(max(old + new, 1))
            say(
                String(
                    format: "L4 backend added: %.0f %% of the calls after two max-age periods; %d failed",
                    share * 100,
                    tally.failed.value
                )
            )
            return ["workload": "L4 backend added", "new_backend_share": share, "failed": tally.failed.value]
        }
    }

    /// Every connection full: a pool of 1 with room for 8 calls and 16 waiting, 64 callers on a
    /// 100 ms server. Past the bound calls are shed at once; once the load drops, none is.
    static func queueBound(slow: ServerProcess, say: (String) -> Void) async throws -> [String: Any] {
        var config = PoolManager.ServiceConfig(endpoints: [.init(host: "127.0.0.1", port: slow.port)], poolSize: 1)
        config.enableRetries = false
        config.streamCapacity = 9  // room for 8 calls
        config.maxQueuedCalls = 16
        return try await withPool(config) { pool in
            let tally = Tally()
            let stop = StopSignal()
            let start = ContinuousClock.now
            async let running: Void = load(pool, callers: 64, tally: tally, stop: stop)
            try await Task.sleep(for: .seconds(2))
            stop.set()
            await running
            let seconds = (ContinuousClock.now - start).seconds
            let (ok, shed, failed) = (tally.ok.value, tally.shed.value, tally.failed.value)
            // The load drops to 4 callers: nothing is shed.
            let after = Tally()
            let calm = StopSignal()
            async let calmLoad: Void = load(pool, callers: 4, tally: after, stop: calm)
            try await Task.sleep(for: .seconds(1))
            calm.set()
            await calmLoad
            say(
                String(
                    format:
                        "queue bound (8 + 16 of 64): %.0f ok/s, %d shed (RESOURCE_EXHAUSTED), %d other failures; after the drop %d ok, %d shed",
                    Double(ok) / seconds,
                    shed,
                    failed,
                    after.ok.value,
                    after.shed.value
                )
            )
            return [
                "workload": "queue bound", "ok": ok, "shed": shed, "failed": failed,
                "ok_after_drop": after.ok.value, "shed_after_drop": after.shed.value,
            ]
        }
    }
}
