import GRPCPoolCoreBridge
import Testing

@testable import GRPCPool

@Suite("Discovery: targets, DNS messages and the address book, no I/O")
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
            ("dns:///svc.local:5000", .dns(server: nil, host: "svc.local", port: 5000)),
            ("dns:svc.local:5000", .dns(server: nil, host: "svc.local", port: 5000)),
            ("dns:///svc.local", .dns(server: nil, host: "svc.local", port: 443)),
            (
                "dns://127.0.0.1:5353/svc.test:7000",
                .dns(server: .init(host: "127.0.0.1", port: 5353), host: "svc.test", port: 7000)
            ),
            ("dns://[::1]/svc.test:7000", .dns(server: .init(host: "::1", port: 53), host: "svc.test", port: 7000)),
            ("dns:///[::1]:7000", .dns(server: nil, host: "::1", port: 7000)),
        ] as [(String, ServiceTarget)]
    )
    func parses(target: String, expected: ServiceTarget) {
        #expect(ServiceTarget(Endpoint(target: target)) == expected)
    }

    @Test("host:port is one address the core resolves")
    func hostPort() {
        #expect(ServiceTarget(Endpoint(host: "localhost", port: 50051)) == .fixed(["localhost:50051"]))
    }

    @Test("Bad dns: targets parse to nothing", arguments: ["dns:///", "dns:///svc:0", "dns:///svc:99999", "dns://x:1"])
    func rejects(target: String) {
        #expect(ServiceTarget(Endpoint(target: target)) == nil)
    }

    @Test("Resolved IPs become core targets")
    func addressText() {
        #expect(ServiceTarget.address(ip: "10.0.0.1", port: 80) == "ipv4:10.0.0.1:80")
        #expect(ServiceTarget.address(ip: "fd00::1", port: 80) == "ipv6:[fd00::1]:80")
    }

    // MARK: - DNS messages

    @Test("A query names the host in labels, asks for recursion, one question, and 4096-byte UDP answers")
    func query() throws {
        let bytes = try DNSMessage.query(id: 0x1234, name: "svc.test", type: .a)
        #expect(
            bytes == [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1, 3] + Array("svc".utf8) + [4] + Array("test".utf8)
                + [0, 0, 1, 0, 1] + [0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]
        )
    }

    @Test("A truncated answer to our query is seen as one; others are not")
    func truncated() {
        var answer = Self.answer(id: 5, records: [(1, [10, 0, 0, 1])])
        #expect(!DNSMessage.isTruncated(answer, id: 5))
        answer[2] |= 0x02
        #expect(DNSMessage.isTruncated(answer, id: 5))
        #expect(!DNSMessage.isTruncated(answer, id: 6), "another query's answer")
        var query = try! DNSMessage.query(id: 5, name: "svc.test", type: .a)
        query[2] |= 0x02
        #expect(!DNSMessage.isTruncated(query, id: 5), "a query, not an answer")
        #expect(!DNSMessage.isTruncated([0, 5], id: 5), "too short")
    }

    /// An answer as a server writes it: the question, then records whose names point back at it.
    static func answer(id: UInt16, code: UInt8 = 0, records: [(type: UInt16, data: [UInt8])]) -> [UInt8] {
        var bytes: [UInt8] = [
            UInt8(id >> 8), UInt8(id & 0xff), 0x81, 0x80 | code, 0, 1, 0, UInt8(records.count), 0, 0, 0, 0,
        ]
        bytes += [3] + Array("svc".utf8) + [4] + Array("test".utf8) + [0, 0, 1, 0, 1]
        for record in records {
            bytes += [0xc0, 12, UInt8(record.type >> 8), UInt8(record.type & 0xff), 0, 1, 0, 0, 0, 30]
            bytes += [0, UInt8(record.data.count)] + record.data
        }
        return bytes
    }

    @Test("An answer's A records, skipping a CNAME")
    func answers() throws {
        let bytes = Self.answer(
            id: 7,
            records: [(5, [3] + Array("foo".utf8) + [0]), (1, [127, 0, 0, 2]), (1, [127, 0, 0, 3])]
        )
        #expect(try DNSMessage.addresses(in: bytes, id: 7, type: .a) == ["127.0.0.2", "127.0.0.3"])
    }

    @Test("AAAA records are written as RFC 5952 text")
    func aaaa() throws {
        let bytes = Self.answer(id: 9, records: [(28, [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])])
        #expect(try DNSMessage.addresses(in: bytes, id: 9, type: .aaaa) == ["fd00::1"])
        #expect(DNSMessage.ipv6Text([0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]) == "1:0:0:2::3")
        #expect(DNSMessage.ipv6Text(Array(repeating: 0, count: 15) + [1]) == "::1")
    }

    @Test("An answer to another query is not ours; no such name is no addresses; a server error throws")
    func otherAnswers() throws {
        #expect(try DNSMessage.addresses(in: Self.answer(id: 1, records: []), id: 2, type: .a) == nil)
        #expect(try DNSMessage.addresses(in: Self.answer(id: 1, code: 3, records: []), id: 1, type: .a) == [])
        #expect(throws: DNSMessage.Failure.self) {
            try DNSMessage.addresses(in: Self.answer(id: 1, code: 2, records: []), id: 1, type: .a)
        }
        #expect(throws: DNSMessage.Failure.self) {
            try DNSMessage.addresses(
                in: Array(Self.answer(id: 1, records: [(1, [1, 2, 3, 4])]).dropLast(2)),
                id: 1,
                type: .a
            )
        }
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
}
