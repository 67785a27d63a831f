import DemoServices
import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge
import Testing

@Suite("Adaptive picking: slow endpoints, capacity, bounded waiting")
struct AdaptivePoolTests {
    @Test("A connection that fails fast does not attract least-busy traffic for having nothing in flight")
    func leastBusyPenalisesFailures() async throws {
        try await withDemoServers(2) { servers in
            // The second server fails every call at once; it stays connected (and healthy to the
            // pool's connectivity check), so only the call outcomes can tell.
            servers[1].behaviour = .init(failure: .init(code: .unavailable, message: "overloaded"))
            let config = testConfig(servers.map(\.target), poolSize: 2) {
                $0.balancing = .leastBusy
                $0.enableRetries = false
            }
            try await withPoolManager(["echo": config]) { manager in
                let pool = try manager.pool(for: "echo")
                let counter = LoadCounter()
                let stop = StopFlag()
                async let load: Void = runLoad(callers: 8, counter: counter, stop: stop) { _ in
                    _ = try await pool.unary(method: echoUnary, request: [1])
                    return true
                }
                _ = await poll(timeLimit: .seconds(30)) { counter.successes + counter.failures.count >= 2000 }
                stop.set()
                await load
                let total = counter.successes + counter.failures.count
                #expect(
                    Double(counter.failures.count) < Double(total) * 0.05,
                    "\(counter.failures.count) of \(total) calls went to the failing connection"
                )
            }
        }
    }

    @Test(
        "Behind an L4 balancer, a backend added mid-run gets at least a quarter of the calls once maxConnectionAge has passed"
    )
    func refreshSpreadsOverNewBackend() async throws {
        try await withDemoServers(2) { backends in
            // The proxy sends every new connection to the next backend in turn; at first there is
            // only one.
            let balancer = TCPProxy(targetPort: backends[0].port)
            try await balancer.start()
            defer { Task { await balancer.stop() } }
            // The connections' ages run on the pool's clock: the test moves it past one age.
            let age = Duration.seconds(60)
            let config = testConfig([balancer.target], poolSize: 4) {
                $0.maxConnectionAge = age
                $0.enableRetries = false
            }
            let clock = ManualClock()
            try await withPoolManager(["echo": config], clock: clock) { manager in
                let pool = try manager.pool(for: "echo")
                let counter = LoadCounter()
                let stop = StopFlag()
                async let load: Void = runLoad(callers: 4, counter: counter, stop: stop) { _ in
                    let response = try await pool.unary(method: echoUnary, request: [5])
                    return response.message == [5]
                }
                #expect(await poll { counter.successes > 100 })
                #expect(backends[1].requestCount == 0)

                // Once every connection has been replaced (one max-age period and its ±10 % jitter
                // on the pool's clock), about half of the new ones went to the new backend.
                balancer.addBackend(port: backends[1].port)
                let before = pool.connections.map { $0.metrics().reconnects }
                clock.advance(by: age * 1.1)
                let replaced = await poll {
                    zip(pool.connections, before).allSatisfy { $0.metrics().reconnects > $1 }
                }
                #expect(replaced, "connections not all refreshed: \(pool.metrics().connections.map(\.reconnects))")
                backends[0].resetCounters()
                backends[1].resetCounters()
                let base = counter.successes
                #expect(await poll { counter.successes > base + 400 })
                stop.set()
                await load
                let (old, new) = (backends[0].requestCount, backends[1].requestCount)
                #expect(
                    Double(new) >= Double(old + new) / 4,
                    "calls after every connection was refreshed: old backend \(old), new \(new)"
                )
                #expect(counter.failures.isEmpty, "make before break: \(counter.failures)")
                #expect(pool.metrics().reconnects >= 4, "every connection was refreshed")
            }
        }
    }

    @Test("Past maxQueuedCalls, a call fails at once with RESOURCE_EXHAUSTED naming the pool; the pool recovers")
    func boundedQueue() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 1) {
                $0.streamCapacity = 3  // room for 2 calls
                $0.maxQueuedCalls = 2
                $0.timeout = .seconds(30)  // the calls' deadline, past the server's delay below
            }
            try await withPoolManager(["echo": config]) { manager in
                let pool = try manager.pool(for: "echo")
                // Long enough that the first two are still running when the shed call has been
                // refused, even in the parallel phase of `make test`, where seconds can pass.
                server.behaviour = .init(delay: .seconds(10))
                // Two calls fill the connection, two more wait in the queue.
                let held = (0..<4).map { index in
                    Task { try await pool.unary(method: echoUnary, request: [UInt8(index)]) }
                }
                #expect(await poll { pool.metrics().inFlight == 2 && pool.metrics().queuedCalls == 2 })
                server.behaviour = .init()

                let shedStart = ContinuousClock.now
                let shed = await #expect(throws: RPCError.self) {
                    try await pool.unary(method: echoUnary, request: [9])
                }
                #expect(shed?.code == .resourceExhausted)
                #expect(shed?.message.contains("'echo'") == true, "\(String(describing: shed))")
                #expect(pool.metrics().inFlight == 2, "the call was refused while the others still ran")
                #expect(ContinuousClock.now - shedStart < .seconds(2), "refused at once, not after waiting")
                #expect(pool.metrics().rejectedRequests == 1)

                // The held calls all succeed, the queued ones once the first two are done.
                for (index, task) in held.enumerated() {
                    let response = try await task.value
                    #expect(response.message == [UInt8(index)])
                }
                #expect(pool.metrics().queuedCalls == 0)
                let response = try await pool.unary(method: echoUnary, request: [10])
                #expect(response.message == [10])
            }
        }
    }

    @Test("A queued call that reaches its deadline fails with DEADLINE_EXCEEDED naming the saturation")
    func queuedCallDeadline() async throws {
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 1) { $0.streamCapacity = 2 }  // room for 1 call
            try await withPoolManager(["echo": config]) { manager in
                let pool = try manager.pool(for: "echo")
                server.behaviour = .init(delay: .seconds(2))
                let held = Task { try await pool.unary(method: echoUnary, request: [1]) }
                #expect(await poll { pool.metrics().inFlight == 1 })
                let error = await #expect(throws: RPCError.self) {
                    try await pool.unary(
                        method: echoUnary,
                        request: [2],
                        options: CoreCallOptions(timeout: .milliseconds(300))
                    )
                }
                #expect(error?.code == .deadlineExceeded)
                #expect(error?.message.contains("had room") == true, "\(String(describing: error))")
                server.behaviour = .init()
                _ = try await held.value
            }
        }
    }
}

extension IsolatedTests {
    /// Compares latencies, so it runs alone: on two cores, other tests' load would decide it.
    @Suite("Least-busy picking against a slow endpoint")
    struct SlowEndpointTests {
        @Test(
            "With one slow endpoint of three, least-busy picking cuts p99 at least 3× against round robin",
            .disabled(if: underSanitizer, "compares latencies, which a sanitizer's slowdown would decide")
        )
        func leastBusyAvoidsSlowEndpoint() async throws {
            try await withDemoServers(3) { servers in
                // The benchmark's slow endpoint is 100 ms slower than calls that take well under a
                // millisecond (release build). In this debug build, with client and servers in one
                // process, a fast call takes about 10 ms (p50) to 50 ms (p99) here, so the test keeps
                // the contrast rather than the figure: 300 ms. (With 100 ms, least-busy's p99 was
                // the fast calls' own p99 and came within 3× of round robin's.)
                servers[2].behaviour = .init(delay: .milliseconds(300))
                let targets = servers.map(\.target)
                var results: [BalancingPolicy: (p99: Duration, slowShare: Double, failures: Int)] = [:]
                for policy in [BalancingPolicy.roundRobin, .leastBusy] {
                    let config = testConfig(targets, poolSize: 3) { $0.balancing = policy }
                    // Round robin's p99 is its slow third from the start, so 150 calls show it (and
                    // keep the run short); least-busy's share of under 1 % needs 1,000.
                    let measuredCalls = policy == .roundRobin ? 150 : 1000
                    results[policy] = try await withPoolManager(["echo": config]) { manager in
                        let pool = try manager.pool(for: "echo")
                        let latencies = Collected<Duration>()
                        let counter = LoadCounter()
                        let stop = StopFlag()
                        async let load: Void = runLoad(callers: 4, counter: counter, stop: stop) { _ in
                            let start = ContinuousClock.now
                            let response = try await pool.unary(method: echoUnary, request: [7])
                            latencies.append(.now - start)
                            return response.message == [7]
                        }
                        // Four callers: enough to make round robin queue behind the slow endpoint,
                        // few enough that the client's own CPU does not make the fast endpoints
                        // slow. A warm-up of 60 calls (every connection's first calls, before
                        // least-busy has seen any latency), then the measured calls. Counted in
                        // calls, not time, so a slow machine only makes the run longer.
                        _ = await poll(timeLimit: .seconds(30)) { counter.successes >= 60 }
                        let warmUp = latencies.values.count
                        let callsBefore = pool.metrics().connections.map(\.totalRequests)
                        _ = await poll(timeLimit: .seconds(60)) { counter.successes >= warmUp + measuredCalls }
                        stop.set()
                        await load
                        let measured = latencies.values.dropFirst(warmUp).sorted()
                        let p99 = measured[min(measured.count - 1, measured.count * 99 / 100)]
                        let calls = zip(pool.metrics().connections, callsBefore).map {
                            ($0.endpoint, $0.totalRequests - $1)
                        }
                        let slowCalls = calls.filter { $0.0 == servers[2].target }.map(\.1).reduce(0, +)
                        let total = calls.map(\.1).reduce(0, +)
                        return (p99, Double(slowCalls) / Double(max(total, 1)), counter.failures.count)
                    }
                }
                let roundRobin = try #require(results[.roundRobin])
                let leastBusy = try #require(results[.leastBusy])
                #expect(roundRobin.failures == 0 && leastBusy.failures == 0)
                #expect(roundRobin.slowShare > 0.2, "round robin sends a third of the calls to each endpoint")
                #expect(
                    leastBusy.slowShare < 0.01,
                    "least busy sent \(leastBusy.slowShare * 100) % to the slow endpoint"
                )
                #expect(
                    roundRobin.p99 >= leastBusy.p99 * 3,
                    "p99: round robin \(roundRobin.p99), least busy \(leastBusy.p99)"
                )
            }
        }
    }
}

extension AdaptivePoolTests {
    /// Dynamic sizing against a real server, with the pool's timers on a ``ManualClock``: each
    /// reading happens when the test moves the clock one interval on, so the decisions can be
    /// checked one by one, with no load beyond the calls that make the demand (calls the server
    /// holds, which cost no CPU) and no wait on the real clock.
    @Test(
        "Dynamic sizing on a manual clock: grows to the demand, waits out the cooldown, shrinks one connection per scaleDownReadings low readings, fails no call"
    )
    func dynamicSizing() async throws {
        let interval = Duration.seconds(7)
        try await withDemoServer { server in
            let config = testConfig([server.target], poolSize: 2) {
                $0.maxConnections = 8
                $0.scaling = .init(
                    targetInFlight: 4...16,
                    interval: interval,
                    scaleUpCooldown: .seconds(10),
                    scaleDownReadings: 3
                )
            }
            let clock = ManualClock()
            try await withPoolManager(["echo": config], clock: clock) { manager in
                let pool = try manager.pool(for: "echo")
                // One reading: the clock moves to the sizing timer's deadline, and the reading is over
                // once the timer is set again.
                let reading = { () async -> Bool in
                    guard await clock.advanceToSleep(in: interval) else { return false }
                    return await clock.waitForSleep(until: clock.now.advanced(by: interval))
                }
                #expect(pool.metrics().poolSize == 2)

                // Calls the server holds make the demand: 64 over 2 connections is 32 each, over the
                // band's 16, and the first reading grows the pool to the 4 that bring it back into it.
                let held = HeldCalls(pool: pool)
                defer { held.cancel() }
                held.start(64)
                try #require(await poll { pool.metrics().inFlight == 64 })
                try #require(await reading())
                #expect(pool.metrics().poolSize == 4)

                // 128 over 4: the next reading falls within the 10 s cooldown and stays; the one after
                // grows to 8 (the maximum, which 128 / 16 also asks for).
                held.start(64)
                try #require(await poll { pool.metrics().inFlight == 128 })
                try #require(await reading())
                #expect(pool.metrics().poolSize == 4, "a growth within the cooldown")
                try #require(await reading())
                #expect(pool.metrics().poolSize == 8)
                #expect(await pool.waitUntilHealthy(connections: 8, timeLimit: .seconds(30)))
                try #require(await reading())
                #expect(pool.metrics().poolSize == 8, "at maxConnections it stays")
                #expect(server.peers.count >= 8, "each added connection is its own TCP connection")

                // The demand drops to the 2 calls of a light load: each third low reading in a row takes
                // one connection out (its calls finish first), down to poolSize.
                let ended = await held.cancelAll()
                #expect(ended.allSatisfy { $0 == .cancelled }, "\(ended)")
                try #require(await poll { pool.metrics().inFlight == 0 })
                let counter = LoadCounter()
                let stop = StopFlag()
                async let load: Void = steadyLoad(pool: pool, callers: 2, counter: counter, stop: stop)
                for size in (2..<8).reversed() {
                    for _ in 0..<2 {
                        try #require(await reading())
                        #expect(pool.metrics().poolSize == size + 1, "two low readings do not shrink")
                    }
                    try #require(await reading())
                    #expect(pool.metrics().poolSize == size)
                }
                try #require(await reading())
                #expect(pool.metrics().poolSize == 2, "at poolSize it stays")
                let before = counter.successes
                #expect(await poll { counter.successes > before + 100 })
                stop.set()
                await load
                #expect(counter.failures.isEmpty, "\(counter.failures.count) failed: \(Set(counter.failures))")
                let metrics = pool.metrics()
                #expect(metrics.connections.filter(\.isActive).map(\.index) == [0, 1])
                #expect(metrics.healthyConnections == 2)
            }
        }
    }
}
