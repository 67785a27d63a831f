import DemoServices
import GRPCCore
import GRPCPool
import Testing

/// Many backends behind one name: the connections spread over the addresses, follow the DNS
/// records as they change, keep the last addresses when the DNS server stops answering, and
/// several clients share many backends by subsetting. Connections are counted from the kernel's
/// socket table, not from the pool's own view.
@Suite("Service discovery: many backends behind one name")
struct ServiceDiscoveryTests {
    static let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
    static let name = "svc.pool.test"

    @Test("A pool of 6 on an ipv4: list of 3 addresses has 2 TCP connections to each", arguments: Stack.allCases)
    func spreadsOverAList(stack: Stack) async throws {
        let hosts = Array(Self.hosts.prefix(3))
        try await withBackends(stack, hosts: hosts) { _, port in
            let target = "ipv4:" + hosts.map { "\($0):\(port)" }.joined(separator: ",")
            try await withPoolManager(["echo": testConfig([target], poolSize: 6)]) { manager in
                let pool = try manager.pool(for: "echo")
                await expectConnections([2, 2, 2], to: hosts, port: port)
                #expect(pool.metrics().addresses == hosts.map { "ipv4:\($0):\(port)" })
                try await expectCallsReachEvery(address: pool.metrics().addresses, of: pool)
            }
        }
    }

    @Test("A pool of 6 on a dns: name with 3 A records has 2 TCP connections to each", arguments: Stack.allCases)
    func spreadsOverADNSName(stack: Stack) async throws {
        let hosts = Array(Self.hosts.prefix(3))
        try await withBackends(stack, hosts: hosts) { _, port in
            try await withDNSServer([Self.name: hosts]) { dns in
                let seen = Collected<PoolEvent>()
                let config = testConfig([dns.target(Self.name, port: port)], poolSize: 6)
                try await withPoolManager(["echo": config], observers: [CollectingObserver(events: seen)]) { manager in
                    let pool = try manager.pool(for: "echo")
                    await expectConnections([2, 2, 2], to: hosts, port: port)
                    let addresses = hosts.map { "ipv4:\($0):\(port)" }
                    #expect(pool.metrics().addresses == addresses)
                    #expect(Set(pool.metrics().connections.map(\.address)) == Set(addresses))
                    #expect(
                        seen.values.contains {
                            $0.kind == .resolved(endpoint: config.endpoints[0].description, addresses: addresses)
                        }
                    )
                    try await expectCallsReachEvery(address: addresses, of: pool)
                }
            }
        }
    }

    @Test(
        "A fourth A record gets connections within one interval, a removed one is drained, and no call fails",
        arguments: Stack.allCases
    )
    func followsTheRecords(stack: Stack) async throws {
        let hosts = Self.hosts
        let interval = Duration.seconds(1)
        try await withBackends(stack, hosts: hosts) { _, port in
            try await withDNSServer([Self.name: Array(hosts.prefix(3))]) { dns in
                let seen = Collected<PoolEvent>()
                let config = testConfig([dns.target(Self.name, port: port)], poolSize: 6) {
                    $0.discovery.resolutionInterval = interval
                    $0.discovery.minResolutionInterval = .milliseconds(500)
                }
                try await withPoolManager(["echo": config], observers: [CollectingObserver(events: seen)]) { manager in
                    let pool = try manager.pool(for: "echo")
                    await expectConnections([2, 2, 2, 0], to: hosts, port: port)
                    let counter = LoadCounter()
                    let stop = StopFlag()
                    let load = Task {
                        await runLoad(callers: 8, counter: counter, stop: stop) { _ in
                            try await pool.client.echo([7], timeout: .seconds(5)) == [7]
                        }
                    }
                    #expect(await poll { counter.successes > 200 })

                    let clock = ContinuousClock()
                    let added = clock.now
                    try dns.setRecords([Self.name: hosts])
                    let arrived = await poll(every: .milliseconds(10), timeLimit: .seconds(10)) {
                        SocketTable.established(to: hosts[3], port: port) > 0
                    }
                    let took = clock.now - added
                    #expect(arrived)
                    // One interval, plus a connect and a health check on a loaded machine.
                    #expect(took < interval + .seconds(2), "the new address got a connection after \(took)")
                    // 6 over 4: two addresses have 2, two have 1.
                    #expect(
                        await poll {
                            let counts = SocketTable.established(to: hosts, port: port)
                            return counts.reduce(0, +) == 6 && counts.sorted() == [1, 1, 2, 2]
                        },
                        "\(SocketTable.established(to: hosts, port: port))"
                    )
                    let fourth = "ipv4:\(hosts[3]):\(port)"
                    #expect(
                        await poll {
                            pool.metrics().connections.filter { $0.address == fourth }.map(\.successfulRequests).reduce(
                                0,
                                +
                            ) > 100
                        },
                        "calls reach the new address"
                    )

                    try dns.setRecords([Self.name: Array(hosts.dropFirst())])
                    await expectConnections([0, 2, 2, 2], to: hosts, port: port)
                    #expect(!pool.metrics().addresses.contains("ipv4:\(hosts[0]):\(port)"))
                    let successes = counter.successes
                    #expect(await poll { counter.successes > successes + 200 })
                    stop.set()
                    await load.value
                    #expect(counter.failures.isEmpty, "failed calls: \(counter.failures)")
                    #expect(seen.values.contains { if case .moved = $0.kind { true } else { false } })
                }
            }
        }
    }

    @Test(
        "A DNS server that stops answering leaves the pool on its last addresses, with no failed call",
        arguments: Stack.allCases
    )
    func keepsTheLastAddresses(stack: Stack) async throws {
        let hosts = Array(Self.hosts.prefix(3))
        try await withBackends(stack, hosts: hosts) { _, port in
            try await withDNSServer([Self.name: hosts]) { dns in
                let config = testConfig([dns.target(Self.name, port: port)], poolSize: 6) {
                    $0.discovery.resolutionInterval = .milliseconds(300)
                    $0.discovery.minResolutionInterval = .milliseconds(100)
                    $0.discovery.resolutionTimeout = .milliseconds(200)
                }
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    await expectConnections([2, 2, 2], to: hosts, port: port)
                    let addresses = pool.metrics().addresses
                    let counter = LoadCounter()
                    let stop = StopFlag()
                    let load = Task {
                        await runLoad(callers: 4, counter: counter, stop: stop) { _ in
                            try await pool.client.echo([7], timeout: .seconds(5)) == [7]
                        }
                    }
                    dns.pause()
                    defer { dns.resume() }
                    #expect(await poll { pool.metrics().resolutionFailures >= 3 })
                    let successes = counter.successes
                    #expect(await poll { counter.successes > successes + 200 })
                    stop.set()
                    await load.value
                    #expect(counter.failures.isEmpty, "failed calls: \(counter.failures)")
                    #expect(pool.metrics().addresses == addresses)
                    #expect(SocketTable.established(to: hosts, port: port) == [2, 2, 2])
                    #expect(pool.metrics().healthyConnections == 6)
                }
            }
        }
    }

    @Test(
        "A name with more A records than 512 bytes hold (EDNS) or than 4096 bytes hold (TCP) yields all of them",
        arguments: [40, 400]
    )
    func manyRecords(count: Int) async throws {
        let name = "many.pool.test"
        let addresses = (0..<count).map { "127.1.\($0 / 200).\($0 % 200 + 1)" }
        try await withDNSServer([name: addresses]) { dns in
            let config = testConfig([dns.target(name, port: 9)], poolSize: 2)
            try await withPoolManager(["many": config], waitForHealthy: false) { manager in
                let pool = try manager.pool(for: "many")
                #expect(await poll { pool.metrics().addresses.count == count }, "\(pool.metrics().addresses.count)")
                #expect(Set(pool.metrics().addresses) == Set(addresses.map { "ipv4:\($0):9" }))
            }
        }
    }

    @Test("Subsetting: 3 clients of 2 connections over 6 backends put exactly one connection on each")
    func subsetsAcrossClients() async throws {
        let hosts = (1...6).map { "127.0.0.\($0)" }
        try await withBackends(.nio, hosts: hosts) { _, port in
            let target = "ipv4:" + hosts.map { "\($0):\(port)" }.joined(separator: ",")
            // Three client processes (pods api-0, api-1, api-2), each with its own pool.
            let services = Dictionary(
                uniqueKeysWithValues: (0..<3).map { client in
                    (
                        ServiceID(rawValue: "api-\(client)"),
                        testConfig([target], poolSize: 2) { $0.discovery.clientID = "api-\(client)" }
                    )
                }
            )
            try await withPoolManager(services) { manager in
                await expectConnections(Array(repeating: 1, count: 6), to: hosts, port: port)
                for pool in manager.metrics().values {
                    #expect(Set(pool.connections.map(\.address)).count == 2, "each client uses two distinct backends")
                }
            }
        }
    }
}

/// Waits until the socket table shows `expected[i]` established connections to `hosts[i]` on
/// `port`, and records an issue with what it shows when that does not happen in time.
func expectConnections(
    _ expected: [Int],
    to hosts: [String],
    port: Int,
    sourceLocation: SourceLocation = #_sourceLocation
) async {
    let reached = await poll { SocketTable.established(to: hosts, port: port) == expected }
    #expect(
        reached,
        "connections per address: \(SocketTable.established(to: hosts, port: port)), expected \(expected)",
        sourceLocation: sourceLocation
    )
}

/// Calls `pool` until each of `addresses` has served a call.
func expectCallsReachEvery(
    address addresses: [String],
    of pool: ConnectionPool,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let served = try await poll {
        for _ in 0..<20 { _ = try await pool.client.echo([1], timeout: .seconds(5)) }
        let metrics = pool.metrics().connections
        return addresses.allSatisfy { address in
            metrics.contains { $0.address == address && $0.successfulRequests > 0 }
        }
    }
    #expect(served, "every address serves calls: \(pool.metrics().connections)", sourceLocation: sourceLocation)
}
