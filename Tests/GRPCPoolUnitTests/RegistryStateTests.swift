import Foundation
import Testing

@testable import GRPCPool

@Suite("RegistryState: grpc-go's etcd naming, skipped values, where a watch resumes, no I/O")
struct RegistryStateTests {
    static func value(_ text: String) -> Data { Data(text.utf8) }

    @Test(
        "A registration's value: grpc-go's JSON names a backend; anything else is skipped, saying why",
        arguments: [
            (#"{"Addr":"10.0.0.1:50051","Metadata":null}"#, "ipv4:10.0.0.1:50051"),
            (#"{"Op":0,"Addr":"[fd00::1]:50051","Metadata":{"zone":"a"}}"#, "ipv6:[fd00::1]:50051"),
            (#"{"Addr":"api-0.api.svc:50051"}"#, "api-0.api.svc:50051"),
            ("not json", nil),
            (#"{"addr":"10.0.0.1:50051"}"#, nil),
            (#"{"Addr":"10.0.0.1"}"#, nil),
            (#"{"Addr":"10.0.0.1:0"}"#, nil),
            (#"{"Addr":":50051"}"#, nil),
            (#"{"Addr":"10.0.0.1:99999"}"#, nil),
        ] as [(String, String?)]
    )
    func values(value: String, expected: String?) {
        let address = try? RegistryState.address(of: Self.value(value)).get()
        #expect(address == expected)
    }

    @Test("A read loads every good key, skips the bad ones by name, and sets the revision")
    func load() {
        var state = RegistryState(prefix: "services/echo")
        #expect(state.prefix == "services/echo/")
        #expect(state.needsSnapshot)
        let skipped = state.load(
            [
                ("services/echo/a", Self.value(#"{"Addr":"10.0.0.1:1"}"#)),
                ("services/echo/b", Self.value("{")),
                ("services/echo/c", Self.value(#"{"Addr":"10.0.0.2:1"}"#)),
            ],
            revision: 7
        )
        #expect(skipped.map(\.key) == ["services/echo/b"])
        #expect(state.addresses == ["ipv4:10.0.0.1:1", "ipv4:10.0.0.2:1"])
        #expect(state.revision == 7)
        #expect(!state.needsSnapshot)
    }

    @Test("Watched changes apply in order; the revision follows them; a bad new value removes its key")
    func changes() {
        var state = RegistryState(prefix: "p")
        _ = state.load([("p/a", Self.value(#"{"Addr":"10.0.0.1:1"}"#))], revision: 3)
        let skipped = state.apply([
            .put(key: "p/b", value: Self.value(#"{"Addr":"10.0.0.2:1"}"#), revision: 4),
            .delete(key: "p/a", revision: 5),
            .put(key: "p/c", value: Self.value(#"{"Addr":"10.0.0.3:1"}"#), revision: 6),
            .put(key: "p/c", value: Self.value("garbage"), revision: 7),
        ])
        #expect(skipped.map(\.key) == ["p/c"])
        #expect(state.addresses == ["ipv4:10.0.0.2:1"])
        #expect(state.revision == 7)
        state.progressed(to: 9)
        #expect(state.revision == 9)
        state.progressed(to: 8)
        #expect(state.revision == 9, "never back")
    }

    @Test("Two keys naming one backend give one address; it stays while either is there")
    func duplicates() {
        var state = RegistryState(prefix: "p")
        _ = state.load(
            [("p/a", Self.value(#"{"Addr":"10.0.0.1:1"}"#)), ("p/b", Self.value(#"{"Addr":"10.0.0.1:1"}"#))],
            revision: 1
        )
        #expect(state.addresses == ["ipv4:10.0.0.1:1"])
        _ = state.apply([.delete(key: "p/a", revision: 2)])
        #expect(state.addresses == ["ipv4:10.0.0.1:1"])
    }

    @Test("A compaction asks for a whole read before the next watch")
    func compaction() {
        var state = RegistryState(prefix: "p")
        _ = state.load([], revision: 1)
        state.compacted()
        #expect(state.needsSnapshot)
    }

    @Test(
        "The prefix's range end: its last byte below 0xff incremented",
        arguments: [("p/", [0x70, 0x30]), ("a", [0x62]), ("a\u{7f}", [0x61, 0x80])] as [(String, [UInt8])]
    )
    func rangeEnd(prefix: String, expected: [UInt8]) {
        #expect(RegistryState.rangeEnd(of: prefix) == Data(expected))
    }

    @Test("etcd: targets parse to their prefix; a bad one to nothing")
    func targets() {
        #expect(ServiceTarget(.init(target: "etcd:///services/echo")) == .registry(prefix: "services/echo"))
        #expect(ServiceTarget(.init(target: "etcd:///services/echo/")) == .registry(prefix: "services/echo"))
        #expect(ServiceTarget(.init(target: "etcd:///")) == nil)
        #expect(ServiceTarget(.init(target: "etcd://10.0.0.1:2379/x")) == nil)
    }
}
