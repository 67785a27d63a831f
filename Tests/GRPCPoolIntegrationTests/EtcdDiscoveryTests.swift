import DemoServices
import GRPCCore
import GRPCPool
import InMemoryLogging
import Logging
import Testing

extension IsolatedTests {
    /// Backends found through a real 3-member etcd cluster on loopback, registered the way
    /// grpc-go's `endpoints.Manager` registers them, on both server stacks. Connections are
    /// counted from the kernel's socket table. Alone: each test runs three etcd processes, whose
    /// start and write-ahead log, beside the parallel phase, stalled other tests' calls past
    /// their deadlines on a fresh clone.
    @Suite("Service discovery through etcd")
    struct EtcdDiscoveryTests {
        static let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]

        @Test(
            "All etcd members stopped for 30 s: every call succeeds on the last backends, the pool says the registry is unreachable, and the changes made before it reconnects are applied",
            arguments: Stack.allCases
        )
        func outage(stack: Stack) async throws {
            try await withBackends(stack, hosts: Self.hosts) { _, port in
                try await withEtcdCluster { cluster in
                    try await cluster.put("svc/echo/a", registration(Self.hosts[0], port))
                    try await cluster.put("svc/echo/b", registration(Self.hosts[1], port))
                    let seen = Collected<PoolEvent>()
                    // The default backoff: after 30 s of failures the pool tries every 5 s, so the
                    // changes made as soon as etcd is back are likely made before it reconnects.
                    let config = etcdConfig(cluster, prefix: "svc/echo", poolSize: 4) {
                        $0.discovery.etcd?.retryMaximum = .seconds(5)
                    }
                    try await withPoolManager(["echo": config], observers: [CollectingObserver(events: seen)]) {
                        manager in
                        let pool = try manager.pool(for: "echo")
                        await expectConnections([2, 2, 0], to: Self.hosts, port: port)
                        let counter = LoadCounter()
                        let stop = StopFlag()
                        let load = Task {
                            await runLoad(callers: 4, pause: .milliseconds(5), counter: counter, stop: stop) { _ in
                                try await pool.client.echo([7], timeout: .seconds(5)) == [7]
                            }
                        }
                        for index in cluster.members.indices { await cluster.kill(index) }
                        let clock = ContinuousClock()
                        let stopped = clock.now
                        #expect(
                            await poll {
                                seen.values.contains {
                                    if case .resolutionFailed(_, let reason) = $0.kind {
                                        reason.contains("etcd unreachable")
                                    } else {
                                        false
                                    }
                                }
                            }
                        )
                        #expect(await poll { pool.metrics().resolutionFailures > 0 })
                        try await Task.sleep(until: stopped + .seconds(30))
                        #expect(
                            pool.metrics().addresses == [Self.hosts[0], Self.hosts[1]].map { "ipv4:\($0):\(port)" }
                        )
                        #expect(SocketTable.established(to: Self.hosts, port: port) == [2, 2, 0])

                        // Back, and changed before the pool's next attempt finds it.
                        for index in cluster.members.indices {
                            try await cluster.restart(index, waitUntilHealthy: false)
                        }
                        for index in cluster.members.indices { #expect(await cluster.waitUntilHealthy(index)) }
                        try await cluster.delete("svc/echo/a")
                        try await cluster.put("svc/echo/c", registration(Self.hosts[2], port))
                        await expectConnections([0, 2, 2], to: Self.hosts, port: port)
                        let successes = counter.successes
                        #expect(await poll { counter.successes > successes + 100 })
                        stop.set()
                        await load.value
                        #expect(counter.failures.isEmpty, "failed calls: \(counter.failures)")
                        #expect(counter.successes > 1000)
                    }
                }
            }
        }

        @Test(
            "A value that is not JSON, or an Addr that does not parse, is skipped with a warning naming the key; the rest serves",
            arguments: Stack.allCases
        )
        func badValues(stack: Stack) async throws {
            try await withBackends(stack, hosts: Array(Self.hosts.prefix(1))) { _, port in
                try await withEtcdCluster { cluster in
                    try await cluster.put("svc/bad/good", registration(Self.hosts[0], port))
                    try await cluster.put("svc/bad/not-json", "10.0.0.9:50051")
                    let logs = InMemoryLogHandler()
                    let manager = try PoolManager(
                        services: ["echo": etcdConfig(cluster, prefix: "svc/bad", poolSize: 2)],
                        logger: Logger(label: "grpc.pool", factory: { _ in logs })
                    )
                    let pool = try manager.pool(for: "echo")
                    try await withThrowingDiscardingTaskGroup { group in
                        group.addTask { try await manager.run() }
                        defer { manager.beginGracefulShutdown() }
                        #expect(await manager.waitUntilHealthy(timeLimit: .seconds(10)))
                        try await cluster.put("svc/bad/no-port", #"{"Addr":"10.0.0.9"}"#)
                        func warned(_ key: String) -> Bool {
                            logs.entries.contains {
                                $0.level == .warning && $0.message == "etcd key skipped"
                                    && $0.metadata["grpc.pool.etcd_key"] == "\(key)"
                            }
                        }
                        #expect(await poll { warned("svc/bad/not-json") }, "read at start")
                        #expect(await poll { warned("svc/bad/no-port") }, "watched")
                        #expect(pool.metrics().addresses == ["ipv4:\(Self.hosts[0]):\(port)"])
                        for _ in 0..<20 { #expect(try await pool.client.echo([1], timeout: .seconds(5)) == [1]) }
                    }
                }
            }
        }

        @Test(
            "With etcd's authentication on, the pool authenticates and follows the prefix; a wrong password says so and finds nothing"
        )
        func authentication() async throws {
            try await withBackends(.nio, hosts: Array(Self.hosts.prefix(2))) { _, port in
                try await withEtcdCluster { cluster in
                    try await cluster.enableAuthentication(user: "root", password: "s3cret")
                    try await cluster.put("svc/auth/a", registration(Self.hosts[0], port))
                    let seen = Collected<PoolEvent>()
                    let services: [ServiceID: PoolManager.ServiceConfig] = [
                        "right": etcdConfig(cluster, prefix: "svc/auth", poolSize: 2) {
                            $0.discovery.etcd?.username = "root"
                            $0.discovery.etcd?.password = "s3cret"
                        },
                        "wrong": etcdConfig(cluster, prefix: "svc/auth", poolSize: 2) {
                            $0.discovery.etcd?.username = "root"
                            $0.discovery.etcd?.password = "guess"
                        },
                    ]
                    try await withPoolManager(
                        services,
                        waitForHealthy: false,
                        observers: [CollectingObserver(events: seen)]
                    ) {
                        manager in
                        let right = try manager.pool(for: "right")
                        #expect(await right.waitUntilHealthy(timeLimit: .seconds(10)))
                        #expect(right.metrics().addresses == ["ipv4:\(Self.hosts[0]):\(port)"])
                        try await cluster.put("svc/auth/b", registration(Self.hosts[1], port))
                        await expectConnections([1, 1], to: Array(Self.hosts.prefix(2)), port: port)
                        #expect(
                            await poll {
                                seen.values.contains {
                                    guard $0.service == "wrong", case .resolutionFailed(_, let reason) = $0.kind else {
                                        return false
                                    }
                                    return reason.contains("authentication failed")
                                }
                            }
                        )
                        let wrong = try manager.pool(for: "wrong")
                        #expect(wrong.metrics().addresses == ["etcd:///svc/auth"], "nothing read")
                    }
                }
            }
        }

        @Test(
            "Over mutual TLS to the members: the pool presents its certificate, checks theirs, and follows the prefix"
        )
        func mutualTLS() async throws {
            let pki = try await TestPKI.make()
            defer { pki.remove() }
            let files = EtcdCluster.TLSFiles(
                ca: pki.ca,
                certificate: pki.serverChain,
                key: pki.serverKey,
                clientCertificate: pki.clientChain,
                clientKey: pki.clientKey
            )
            try await withBackends(.nio, hosts: Array(Self.hosts.prefix(2))) { _, port in
                try await withEtcdCluster(tls: files) { cluster in
                    try await cluster.put("svc/tls/a", registration(Self.hosts[0], port))
                    let config = etcdConfig(cluster, prefix: "svc/tls", poolSize: 2) {
                        $0.discovery.etcd?.transportSecurity = .tls(
                            .init(
                                trustRoots: .file(path: pki.ca),
                                certificateChain: .file(path: pki.clientChain),
                                privateKey: .file(path: pki.clientKey)
                            )
                        )
                    }
                    try await withPoolManager(["echo": config]) { manager in
                        let pool = try manager.pool(for: "echo")
                        #expect(pool.metrics().addresses == ["ipv4:\(Self.hosts[0]):\(port)"])
                        try await cluster.put("svc/tls/b", registration(Self.hosts[1], port))
                        await expectConnections([1, 1], to: Array(Self.hosts.prefix(2)), port: port)
                    }
                }
            }
        }
    }
}

extension IsolatedTests {
    /// etcd discovery timed against its must-meet bounds, and under 64 callers: alone.
    @Suite("Service discovery through etcd, timed")
    struct EtcdTimedTests {
        static let hosts = EtcdDiscoveryTests.hosts

        @Test(
            "A backend registered with etcdctl put gets connections and calls within 1 s; one whose 5 s lease lapses leaves the rotation within 6 s, drained, 0 failed",
            arguments: Stack.allCases
        )
        func registerAndLapse(stack: Stack) async throws {
            try await withBackends(stack, hosts: Array(Self.hosts.prefix(2))) { _, port in
                try await withEtcdCluster { cluster in
                    try await cluster.put("svc/echo/a", registration(Self.hosts[0], port))
                    let config = etcdConfig(cluster, prefix: "svc/echo", poolSize: 4)
                    try await withPoolManager(["echo": config]) { manager in
                        let pool = try manager.pool(for: "echo")
                        await expectConnections([4, 0], to: Array(Self.hosts.prefix(2)), port: port)
                        let counter = LoadCounter()
                        let stop = StopFlag()
                        let load = Task {
                            await runLoad(callers: 8, counter: counter, stop: stop) { _ in
                                try await pool.client.echo([7], timeout: .seconds(5)) == [7]
                            }
                        }
                        let second = "ipv4:\(Self.hosts[1]):\(port)"
                        func served() -> Int {
                            pool.metrics().connections.filter { $0.address == second }.map(\.successfulRequests)
                                .reduce(0, +)
                        }
                        let clock = ContinuousClock()
                        let registrar = try await cluster.register(
                            "svc/echo/b",
                            address: "\(Self.hosts[1]):\(port)",
                            ttl: 5
                        )
                        let registered = clock.now
                        #expect(await poll(every: .milliseconds(5)) { served() > 0 })
                        let firstCall = clock.now - registered
                        #expect(firstCall < .seconds(1), "the first call to the new backend came after \(firstCall)")
                        await expectConnections([2, 2], to: Array(Self.hosts.prefix(2)), port: port)

                        await registrar.kill()
                        let lapsed = clock.now
                        #expect(await poll(every: .milliseconds(20)) { !pool.metrics().addresses.contains(second) })
                        let out = clock.now - lapsed
                        #expect(out < .seconds(6), "out of rotation after \(out)")
                        await expectConnections([4, 0], to: Array(Self.hosts.prefix(2)), port: port)
                        stop.set()
                        await load.value
                        #expect(counter.failures.isEmpty, "failed calls: \(counter.failures)")
                    }
                }
            }
        }

        @Test(
            "Under 64 callers, killing one etcd member and then the leader: 0 failed calls, and later changes still arrive within 1 s",
            arguments: Stack.allCases
        )
        func memberFailures(stack: Stack) async throws {
            try await withBackends(stack, hosts: Self.hosts) { _, port in
                try await withEtcdCluster { cluster in
                    try await cluster.put("svc/echo/a", registration(Self.hosts[0], port))
                    let config = etcdConfig(cluster, prefix: "svc/echo", poolSize: 4)
                    try await withPoolManager(["echo": config]) { manager in
                        let pool = try manager.pool(for: "echo")
                        let counter = LoadCounter()
                        let stop = StopFlag()
                        let load = Task {
                            await runLoad(callers: 64, counter: counter, stop: stop) { _ in
                                try await pool.client.echo([7], timeout: .seconds(5)) == [7]
                            }
                        }
                        let clock = ContinuousClock()
                        /// Puts `key` and returns how long until the pool lists the address.
                        func arrival(of key: String, host: String) async throws -> Duration {
                            try await cluster.put(key, registration(host, port))
                            let put = clock.now
                            let address = "ipv4:\(host):\(port)"
                            #expect(await poll(every: .milliseconds(5)) { pool.metrics().addresses.contains(address) })
                            return clock.now - put
                        }
                        #expect(await poll { counter.successes > 1000 })

                        let leader = try await cluster.leader()
                        let follower = (leader + 1) % cluster.members.count
                        await cluster.kill(follower)
                        let afterFollower = try await arrival(of: "svc/echo/b", host: Self.hosts[1])
                        #expect(afterFollower < .seconds(1), "a change after a member was killed took \(afterFollower)")
                        try await cluster.restart(follower)

                        await cluster.kill(leader)
                        #expect(await poll { (try? await cluster.leader()).map { $0 != leader } ?? false })
                        let afterLeader = try await arrival(of: "svc/echo/c", host: Self.hosts[2])
                        #expect(afterLeader < .seconds(1), "a change after the leader was killed took \(afterLeader)")
                        try await cluster.restart(leader)

                        let successes = counter.successes
                        #expect(await poll { counter.successes > successes + 1000 })
                        stop.set()
                        await load.value
                        #expect(counter.failures.isEmpty, "failed calls: \(counter.failures)")
                    }
                }
            }
        }
    }
}
