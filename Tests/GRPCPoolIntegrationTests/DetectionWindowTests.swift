import DemoServices
import GRPCCore
import GRPCPool
import GRPCPoolCoreBridge
import Testing

extension IsolatedTests {
    /// Faults whose tests bound how long it takes to notice or react, where the timers are the C
    /// core's (keepalive pings, reconnection backoff) and so run on real time. They run alone: in
    /// the parallel phase, two cores shared by some 150 tests stretch every timer and turn a
    /// window into a coin toss.
    @Suite("Detection windows")
    struct DetectionWindowTests {
        @Test("A stalled endpoint is detected by keepalive and its connection replaced")
        func stalledEndpoint() async throws {
            try await withDemoServer { a in
                try await withDemoServer { b in
                    let proxy = TCPProxy(targetPort: b.port)
                    try await proxy.start()
                    defer { Task { await proxy.stop() } }
                    let config = testConfig([a.target, proxy.target], poolSize: 2) { config in
                        config.keepaliveTime = .seconds(1)
                        config.keepaliveTimeout = .milliseconds(500)
                    }
                    try await withPoolManager(["echo": config]) { manager in
                        let pool = try manager.pool(for: "echo")
                        let stalled = pool.connections.first { $0.endpoint.port == proxy.port }!
                        let clock = ContinuousClock()
                        proxy.mode = .blackHole
                        let start = clock.now
                        // keepaliveTime (1 s) + keepaliveTimeout (0.5 s) + one check interval (0.3 s).
                        let bound = Duration.milliseconds(1800)
                        #expect(await poll(every: .milliseconds(10), timeLimit: .seconds(5)) { !stalled.isHealthy })
                        let detectedAfter = clock.now - start
                        #expect(detectedAfter <= bound + .milliseconds(500), "detected after \(detectedAfter)")

                        // Calls go to the healthy endpoint meanwhile.
                        for _ in 0..<20 {
                            let response = try await pool.unary(method: echoUnary, request: [4])
                            #expect(response.message == [4])
                        }
                        proxy.mode = .forward
                        await proxy.dropConnections()
                        #expect(await poll(timeLimit: .seconds(10)) { stalled.isHealthy && stalled.state == .ready })
                        #expect(stalled.metrics().reconnects >= 1)
                        let response = try await stalled.unary(method: echoUnary, request: [6])
                        #expect(response.message == [6])
                    }
                }
            }
        }

        @Test("A server that resets every connection is retried with exponentially growing gaps")
        func resetBackoff() async throws {
            try await withDemoServer { server in
                let proxy = TCPProxy(targetPort: server.port)
                try await proxy.start()
                proxy.mode = .reset
                let config = testConfig([proxy.target], poolSize: 1) { config in
                    config.retryDelay = .milliseconds(100)
                    config.maxRetryDelay = .milliseconds(1600)
                    config.maxRetries = 10
                }
                try await withPoolManager(["echo": config], waitForHealthy: false) { manager in
                    let clock = ContinuousClock()
                    let start = clock.now
                    // Nine connection attempts: enough gaps to see them grow.
                    let attempts = 9
                    #expect(await poll(timeLimit: .seconds(30)) { proxy.acceptTimes.count >= attempts })
                    let times = proxy.acceptTimes.prefix(attempts).map { ($0 - start).milliseconds }
                    let gaps = zip(times.dropFirst(), times).map { $0 - $1 }
                    let summary = "attempts at \(times.map { Int($0) }) ms"
                    try #require(gaps.count == attempts - 1, "\(summary)")
                    // Without backoff a loopback reset loop makes nine attempts within milliseconds;
                    // the doubling from 100 ms toward the 1.6 s cap spreads them over seconds (the
                    // pool's new channel and the core's own reconnection each back off).
                    #expect(times[attempts - 1] - times[0] >= 1000, "\(summary)")
                    // The gaps grow: the last three add up to at least twice the first three (the core's
                    // ×1.6 schedule makes it about six times; the margin absorbs a loaded machine).
                    #expect(gaps.suffix(3).reduce(0, +) >= 2 * gaps.prefix(3).reduce(0, +), "\(summary)")
                    // And the tail of the schedule reaches the cap's order of magnitude (a quarter of the
                    // 1.6 s cap: when the pool's replacement channel and the core's reconnection of the
                    // old one interleave their attempts, the gaps between accepts are about halved).
                    #expect((gaps.max() ?? 0) >= 400, "\(summary)")
                    let pool = try manager.pool(for: "echo")
                    #expect(pool.metrics().healthyConnections == 0)

                    // When the server behaves again, the connection comes back within one capped gap.
                    proxy.mode = .forward
                    #expect(await poll(timeLimit: .seconds(5)) { pool.metrics().healthyConnections == 1 })
                }
                await proxy.stop()
            }
        }
    }
}

/// Outlier ejection against a real server, with the pool's timers on a ``ManualClock``: the
/// ejection comes from the calls' failures (their deadlines are real), and it ends when the test
/// moves the clock past `ejectionTime`, not before, whatever the channel does meanwhile.
@Suite("Outlier ejection on a manual clock")
struct EjectionTests {
    @Test(
        "A connection whose server stops answering is ejected after its failure streak, the calls that follow do not fail, and it returns after ejectionTime"
    )
    func stalledConnectionEjected() async throws {
        try await withDemoServers(2) { servers in
            let proxy = TCPProxy(targetPort: servers[0].port)
            try await proxy.start()
            defer { Task { await proxy.stop() } }
            let ejectionTime = Duration.seconds(30)
            let config = testConfig([proxy.target, servers[1].target], poolSize: 2) {
                $0.enableRetries = false
                // Keepalive would find the stall too, but only after 60 + 20 s: here the failed
                // calls must.
                $0.keepaliveTime = .seconds(60)
                $0.keepaliveTimeout = .seconds(20)
                $0.outlierDetection = .init(consecutiveFailures: 3, ejectionTime: ejectionTime)
            }
            let clock = ManualClock()
            try await withPoolManager(["echo": config], clock: clock) { manager in
                let pool = try manager.pool(for: "echo")
                let counter = LoadCounter()
                let stop = StopFlag()
                async let load: Void = runLoad(callers: 4, counter: counter, stop: stop) { _ in
                    let response = try await pool.unary(
                        method: echoUnary,
                        request: [3],
                        options: CoreCallOptions(timeout: .seconds(2))
                    )
                    return response.message == [3]
                }
                #expect(await poll { counter.successes > 100 })
                proxy.mode = .blackHole

                // Three calls time out on the stalled connection (2 s each): it is ejected.
                let ejected = await pool.waitUntil(timeLimit: .seconds(30)) { $0.connections[0].isEjected }
                try #require(ejected, "not ejected: \(pool.metrics().connections[0])")
                // The calls that were already on it end at their deadline; after that, none fails.
                #expect(await poll { pool.connections[0].inFlight == 0 })
                let failuresBefore = counter.failures.count
                let successesBefore = counter.successes
                #expect(await poll { counter.successes > successesBefore + 300 })
                #expect(
                    counter.failures.count == failuresBefore,
                    "failed after the ejection: \(counter.failures.dropFirst(failuresBefore))"
                )

                // The server answers again and the channel reconnects, but the ejection lasts its time.
                proxy.mode = .forward
                await proxy.dropConnections()
                #expect(await poll { pool.connections[0].state == .ready })
                let requestsWhileEjected = pool.metrics().connections[0].totalRequests
                let more = counter.successes
                #expect(await poll { counter.successes > more + 100 })
                #expect(pool.metrics().connections[0].isEjected, "ejected until ejectionTime has passed")
                #expect(pool.metrics().connections[0].totalRequests == requestsWhileEjected)

                // ejectionTime on the pool's clock: it is back in rotation and takes calls again.
                try #require(await clock.advanceToSleep(in: ejectionTime))
                #expect(
                    await pool.waitUntil(timeLimit: .seconds(30)) {
                        $0.connections[0].isHealthy && !$0.connections[0].isEjected
                    }
                )
                #expect(await poll { pool.metrics().connections[0].totalRequests > requestsWhileEjected + 20 })
                stop.set()
                await load
                #expect(counter.failures.allSatisfy { $0 == .deadlineExceeded }, "\(Set(counter.failures))")
                let metrics = pool.metrics().connections
                #expect(metrics[0].ejections == 1)
                #expect(metrics[1].isHealthy && !metrics[1].isEjected, "the other connection stays in")
            }
        }
    }
}
