import GRPCPoolCoreBridge
import Testing

@testable import GRPCPool

@Suite("Discovery: targets, SRV shares and the address book, no I/O")
struct DiscoveryTests {
    typealias Endpoint = PoolManager.Endpoint

    @Test(
        "Targets: what each names",
        arguments: [
            (
                "ipv4:127.0.0.1:5000,127.0.0.2:5000",
                ServiceTarget.fixed(["ipv4:127.0.0.1:5000", "ipv4:127.0.0.2:5000"])
            ),
            ("ipv6:[::1]:5000,[::2]:6000", .fixed(["ipv6:[::1]:5000", "ipv6:[::2]:6000"])),
            ("unix:/run/svc.sock", .fixed(["unix:/run/svc.sock"])),
            ("dns:///svc.local:5000", .dns(server: nil, name: .host("svc.local", port: 5000))),
            ("dns:svc.local:5000", .dns(server: nil, name: .host("svc.local", port: 5000))),
            ("dns:///svc.local", .dns(server: nil, name: .host("svc.local", port: 443))),
            (
                "dns://127.0.0.1:5353/svc.test:7000",
                .dns(server: .init(host: "127.0.0.1", port: 5353), name: .host("svc.test", port: 7000))
            ),
            (
                "dns://[::1]/svc.test:7000",
                .dns(server: .init(host: "::1", port: 53), name: .host("svc.test", port: 7000))
            ),
            ("dns:///[::1]:7000", .dns(server: nil, name: .host("::1", port: 7000))),
            ("dns+srv:///_grpc._tcp.svc.local", .dns(server: nil, name: .service("_grpc._tcp.svc.local"))),
            (
                "dns+srv://127.0.0.1:5353/_api._tcp.svc.test",
                .dns(server: .init(host: "127.0.0.1", port: 5353), name: .service("_api._tcp.svc.test"))
            ),
        ] as [(String, ServiceTarget)]
    )
    func parses(target: String, expected: ServiceTarget) {
        #expect(ServiceTarget(Endpoint(target: target)) == expected)
    }

    @Test("host:port is one address the core resolves")
    func hostPort() {
        #expect(ServiceTarget(Endpoint(host: "localhost", port: 50051)) == .fixed(["localhost:50051"]))
    }

    @Test(
        "Bad dns: targets parse to nothing",
        arguments: [
            "dns:///", "dns:///svc:0", "dns:///svc:99999", "dns://x:1", "dns+srv:///", "dns+srv:///_a._tcp.svc:80",
        ]
    )
    func rejects(target: String) {
        #expect(ServiceTarget(Endpoint(target: target)) == nil)
    }

    @Test("Resolved IPs become core targets")
    func addressText() {
        #expect(ServiceTarget.address(ip: "10.0.0.1", port: 80) == "ipv4:10.0.0.1:80")
        #expect(ServiceTarget.address(ip: "fd00::1", port: 80) == "ipv6:[fd00::1]:80")
    }

    // MARK: - The address book

    static let dnsEndpoint = Endpoint(target: "dns://127.0.0.1:5353/svc.test:7000")

    static func placements(_ ips: [String]) -> [Placement] {
        ips.map { Placement(address: "ipv4:\($0):7000", endpoint: Self.dnsEndpoint, authority: "svc.test:7000") }
    }

    @Test("Before its first lookup, a name is its own target; a lookup replaces it")
    func firstLookup() {
        var book = AddressBook(endpoints: [Self.dnsEndpoint], clientID: "api-0")
        #expect(book.addresses == ["dns://127.0.0.1:5353/svc.test:7000"])
        let changed = book.update(endpoint: 0, to: Self.placements(["127.0.0.1", "127.0.0.2"]))
        #expect(changed)
        #expect(book.addresses == ["ipv4:127.0.0.1:7000", "ipv4:127.0.0.2:7000"])
        let reordered = book.update(endpoint: 0, to: Self.placements(["127.0.0.2", "127.0.0.1"]))
        #expect(!reordered, "the same set, reordered")
    }

    @Test("Six connections over three addresses found by name: 2/2/2; a fourth address takes one")
    func plansOverNames() {
        var book = AddressBook(endpoints: [Self.dnsEndpoint], clientID: "api-0")
        _ = book.update(endpoint: 0, to: Self.placements(["127.0.0.1", "127.0.0.2", "127.0.0.3"]))
        let first = book.plan(for: Array(repeating: nil, count: 6), size: 6)
        #expect(
            first.map { $0!.address.dropFirst(5).prefix(9) } == [
                "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1", "127.0.0.2", "127.0.0.3",
            ]
        )
        #expect(first.allSatisfy { $0?.authority == "svc.test:7000" })
        _ = book.update(endpoint: 0, to: Self.placements(["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]))
        let second = book.plan(for: first, size: 6)
        #expect(zip(first, second).filter { $0 != $1 }.map { $1!.address } == ["ipv4:127.0.0.4:7000"])
    }

    @Test("Endpoints of every kind share one plan: each address once")
    func mixedEndpoints() {
        let book = AddressBook(
            endpoints: [Endpoint(host: "10.0.0.1", port: 1), Endpoint(target: "ipv4:10.0.0.2:1,10.0.0.3:1")],
            clientID: "x"
        )
        #expect(!book.hasNames)
        let plan = book.plan(for: Array(repeating: nil, count: 3), size: 3).map { $0!.address }
        #expect(plan == ["10.0.0.1:1", "ipv4:10.0.0.2:1", "ipv4:10.0.0.3:1"])
    }

    @Test("A name's address carries its authority; TLS checks the name, not the IP")
    func authority() {
        let placement = Self.placements(["127.0.0.1"])[0]
        let plain = placement.channelOptions(.init(), tls: false)
        #expect(plain.defaultAuthority == "svc.test:7000")
        #expect(plain.sslTargetNameOverride == nil)
        #expect(placement.channelOptions(.init(), tls: true).sslTargetNameOverride == "svc.test")
    }

    // MARK: - SRV records and TTLs

    typealias Record = ServiceRecords.Record

    static func record(_ target: String, _ port: Int, priority: Int = 0, weight: Int = 0, _ ips: [String]?) -> Record {
        Record(target: target, port: port, priority: priority, weight: weight, addresses: ips)
    }

    @Test("SRV: the lowest priority value with an address wins; weights are split over a target's addresses")
    func srvShares() {
        let records = [
            Self.record("b.test", 81, priority: 10, weight: 4, ["10.0.0.2", "10.0.0.3"]),
            Self.record("a.test", 80, priority: 10, weight: 1, ["10.0.0.1"]),
            Self.record("c.test", 82, priority: 20, weight: 9, ["10.0.0.4"]),
        ]
        #expect(
            ServiceRecords.shares(of: records) == [
                .init(address: "ipv4:10.0.0.1:80", authority: "a.test:80", weight: 1),
                .init(address: "ipv4:10.0.0.2:81", authority: "b.test:81", weight: 2),
                .init(address: "ipv4:10.0.0.3:81", authority: "b.test:81", weight: 2),
            ]
        )
    }

    @Test("SRV: a later priority is used only when every earlier record is gone (removed, or no address)")
    func srvFallback() {
        let later = Self.record("c.test", 82, priority: 20, weight: 1, ["10.0.0.4"])
        let unresolved = [Self.record("a.test", 80, priority: 10, weight: 1, nil), later]
        #expect(ServiceRecords.shares(of: unresolved).map(\.address) == ["ipv4:10.0.0.4:82"])
        let empty = [Self.record("a.test", 80, priority: 10, weight: 1, []), later]
        #expect(ServiceRecords.shares(of: empty).map(\.address) == ["ipv4:10.0.0.4:82"])
        #expect(ServiceRecords.shares(of: [Self.record("a.test", 80, nil)]).isEmpty)
    }

    @Test("SRV: weights all 0 count alike; an address two records name gets both shares")
    func srvZeroWeights() {
        let shares = ServiceRecords.shares(of: [
            Self.record("a.test", 80, ["10.0.0.1"]), Self.record("b.test", 80, ["10.0.0.1", "10.0.0.2"]),
        ])
        #expect(shares.map(\.weight) == [1.5, 0.5])
    }

    @Test(
        "Weighted plans: each address gets its share of the connections, rounded by largest remainder",
        arguments: [
            (6, [1.0, 1, 4], [1, 1, 4]),
            (6, [1.0, 1, 1], [2, 2, 2]),
            (7, [1.0, 2, 4], [1, 2, 4]),
            (4, [1.0, 1, 4], [1, 1, 2]),
            (3, [0.0, 1, 1], [0, 2, 1]),
            (3, [0.0, 0, 0], [1, 1, 1]),
        ] as [(Int, [Double], [Int])]
    )
    func weightedPlan(connections: Int, weights: [Double], expected: [Int]) {
        let addresses = ["a", "b", "c"]
        let plan = AddressPlan.assign(
            Array(repeating: nil, count: connections),
            over: addresses,
            weights: Dictionary(uniqueKeysWithValues: zip(addresses, weights))
        )
        #expect(addresses.map { address in plan.count { $0 == address } } == expected)
    }

    @Test("Changing weights moves only the connections over their new share")
    func weightedMoves() {
        let current: [String?] = ["a", "b", "c", "a", "b", "c"]
        let plan = AddressPlan.assign(current, over: ["a", "b", "c"], weights: ["a": 1, "b": 1, "c": 4])
        #expect(zip(current, plan).filter { $0 != $1 }.count == 2)
        #expect(["a", "b", "c"].map { address in plan.count { $0 == address } } == [1, 1, 4])
    }

    @Test(
        "The next lookup: at the TTL when it is shorter than the interval, never sooner than the shortest",
        arguments: [
            (nil, 30_000), (60_000, 30_000), (30_000, 30_000), (10_000, 10_000), (1_000, 5_000), (0, 5_000),
        ] as [(Int?, Int)]
    )
    func lookupInterval(ttl: Int?, expected: Int) {
        let discovery = PoolManager.Discovery(resolutionInterval: .seconds(30), minResolutionInterval: .seconds(5))
        #expect(
            ConnectionPool.lookupInterval(ttl: ttl.map { .milliseconds($0) }, discovery) == .milliseconds(expected)
        )
    }
}
