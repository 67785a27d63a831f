import DemoServices
import GRPCCore
import GRPCPool
import Testing

/// DNS beyond one name's A records, against dnsmasq: SRV records put connections on each
/// target's own port in the shares their weights give and fall back by priority, and a record's
/// TTL shorter than the interval brings the next lookup forward; with no server named, the
/// system's configuration answers. Connections are counted from the kernel's socket table.
@Suite("Service discovery through c-ares: SRV records, TTLs, the system's configuration")
struct ServiceRecordTests {
    static let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    static let targets = ["b1.pool.test", "b2.pool.test", "b3.pool.test"]
    static let service = "_echo._tcp.svc.pool.test"

    /// Each target's A record: target `i` is `hosts[i]`.
    static var records: [String: [String]] {
        Dictionary(uniqueKeysWithValues: zip(Self.targets, Self.hosts.map { [$0] }))
    }

    static func services(_ ports: [Int], priorities: [Int], weights: [Int]) -> [DNSServer.ServiceRecord] {
        Self.targets.indices.map {
            DNSServer.ServiceRecord(
                name: Self.service,
                target: Self.targets[$0],
                port: ports[$0],
                priority: priorities[$0],
                weight: weights[$0]
            )
        }
    }

    static func established(_ ports: [Int]) -> [Int] {
        zip(Self.hosts, ports).map { SocketTable.established(to: $0, port: $1) }
    }

    @Test("SRV weights 1/1/4 put 6 connections 1/1/4 on each target's own port", arguments: Stack.allCases)
    func weights(stack: Stack) async throws {
        try await withBackendsOnOwnPorts(stack, hosts: Self.hosts) { _, ports in
            let services = Self.services(ports, priorities: [0, 0, 0], weights: [1, 1, 4])
            try await withDNSServer(Self.records, services: services) { dns in
                let config = testConfig([dns.serviceTarget(Self.service)], poolSize: 6)
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    #expect(await poll { Self.established(ports) == [1, 1, 4] }, "\(Self.established(ports))")
                    let addresses = zip(Self.hosts, ports).map { "ipv4:\($0):\($1)" }
                    #expect(pool.metrics().addresses == addresses.sorted())
                    try await expectCallsReachEvery(address: addresses, of: pool)
                }
            }
        }
    }

    @Test(
        "A later SRV priority gets connections only when every earlier record is gone, under load with no failed call",
        arguments: Stack.allCases
    )
    func priorities(stack: Stack) async throws {
        try await withBackendsOnOwnPorts(stack, hosts: Self.hosts) { _, ports in
            let all = Self.services(ports, priorities: [10, 10, 20], weights: [1, 1, 1])
            try await withDNSServer(Self.records, services: all) { dns in
                let config = testConfig([dns.serviceTarget(Self.service)], poolSize: 4) {
                    $0.discovery.resolutionInterval = .milliseconds(500)
                    $0.discovery.minResolutionInterval = .milliseconds(100)
                }
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    #expect(await poll { Self.established(ports) == [2, 2, 0] }, "\(Self.established(ports))")
                    let counter = LoadCounter()
                    let stop = StopFlag()
                    let load = Task {
                        await runLoad(callers: 8, counter: counter, stop: stop) { _ in
                            try await pool.client.echo([7], timeout: .seconds(5)) == [7]
                        }
                    }
                    #expect(await poll { counter.successes > 100 })

                    // One of the first priority left: it takes every connection.
                    try await dns.setServices(Array(all.dropFirst()))
                    #expect(await poll { Self.established(ports) == [0, 4, 0] }, "\(Self.established(ports))")
                    // None of the first priority left: the second takes them.
                    try await dns.setServices([all[2]])
                    #expect(await poll { Self.established(ports) == [0, 0, 4] }, "\(Self.established(ports))")
                    // The first priority back: the connections return to it.
                    try await dns.setServices(all)
                    #expect(await poll { Self.established(ports) == [2, 2, 0] }, "\(Self.established(ports))")

                    let successes = counter.successes
                    #expect(await poll { counter.successes > successes + 100 })
                    stop.set()
                    await load.value
                    #expect(counter.failures.isEmpty, "failed calls: \(counter.failures)")
                }
            }
        }
    }

    @Test("A 1 s TTL brings the next lookup forward from a 60 s interval", arguments: Stack.allCases)
    func ttl(stack: Stack) async throws {
        let name = "ttl.pool.test"
        try await withBackends(stack, hosts: Array(Self.hosts.prefix(2))) { _, port in
            try await withDNSServer([name: [Self.hosts[0]]], ttl: 1) { dns in
                let config = testConfig([dns.target(name, port: port)], poolSize: 2) {
                    $0.discovery.resolutionInterval = .seconds(60)
                    $0.discovery.minResolutionInterval = .milliseconds(200)
                }
                try await withPoolManager(["echo": config]) { manager in
                    let pool = try manager.pool(for: "echo")
                    await expectConnections([2, 0], to: Array(Self.hosts.prefix(2)), port: port)
                    let clock = ContinuousClock()
                    let changed = clock.now
                    try dns.setRecords([name: Array(Self.hosts.prefix(2))])
                    await expectConnections([1, 1], to: Array(Self.hosts.prefix(2)), port: port)
                    let took = clock.now - changed
                    // The TTL, plus a connect and a health check on a loaded machine; far from 60 s.
                    #expect(took < .seconds(5), "the new address got a connection after \(took)")
                    #expect(pool.metrics().addresses.count == 2)
                }
            }
        }
    }

    @Test("With no DNS server named, the system's configuration answers (localhost from /etc/hosts)")
    func systemConfiguration() async throws {
        try await withBackends(.nio, hosts: ["127.0.0.1"]) { _, port in
            let config = testConfig(["dns:///localhost:\(port)"], poolSize: 2)
            try await withPoolManager(["echo": config], waitForHealthy: false) { manager in
                let pool = try manager.pool(for: "echo")
                #expect(await poll { pool.metrics().addresses.contains("ipv4:127.0.0.1:\(port)") })
                #expect(pool.metrics().resolutionFailures == 0)
                // Connected and checked on the address found (a loaded machine may take a while).
                #expect(await pool.waitUntilHealthy(timeLimit: .seconds(30)))
                let reply = try await pool.client.echo([1], timeout: .seconds(30))
                #expect(reply == [1])
            }
        }
    }
}
