import DemoServices
import GRPCCore
import Testing

/// The two server stacks behaviour is proven against: grpc-swift-2's NIO transport (the
/// ``DemoServer``) and gRPC's C core with its default settings (the ``CoreServer``, grpcio).
enum Stack: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case nio
    case core

    var testDescription: String { self == .nio ? "NIO server" : "C-core server" }
}

/// A server of either stack serving `bench.Echo` and `grpc.health.v1`.
protocol Backend: Sendable {
    var target: String { get }
    /// Stops it at once: its connections go away.
    func halt() async
    /// RPCs the server saw cancelled by the client (for the NIO server also delayed echoes; for
    /// both, `bench.Echo/Stream` calls cancelled mid-stream).
    var cancelledRPCs: Int { get }
}

extension DemoServer: Backend {
    func halt() async { await self.stop() }
}

extension CoreServer: Backend {}

/// Runs `body` with a started server of `stack`, stopped afterwards whatever happens.
func withBackend<Result>(_ stack: Stack, _ body: (any Backend) async throws -> Result) async throws -> Result {
    switch stack {
    case .nio: try await withDemoServer { try await body($0) }
    case .core: try await withCoreServer { try await body($0) }
    }
}

extension GRPCClient {
    /// `bench.Echo/Unary` on raw bytes with a deadline, as a generated stub calls it.
    func echo(_ payload: [UInt8], timeout: Duration) async throws -> [UInt8] {
        var options = CallOptions.defaults
        options.timeout = timeout
        return try await self.unary(
            request: ClientRequest(message: payload),
            descriptor: MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Unary", type: .unary),
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: options
        ) { try $0.message }
    }
}

/// Runs `body` with one started server of `stack` on each of `hosts` (loopback addresses), all
/// on one port, as the replicas behind one name are; stopped afterwards whatever happens.
func withBackends<Result>(
    _ stack: Stack,
    hosts: [String],
    _ body: (_ servers: [any Backend], _ port: Int) async throws -> Result
) async throws -> Result {
    try await withBackends(stack, hosts: hosts, samePort: true) { servers, ports in try await body(servers, ports[0]) }
}

/// Runs `body` with one started server of `stack` on each of `hosts`, each on a port of its own
/// (`ports[i]` is `hosts[i]`'s), as the targets of SRV records are; stopped afterwards whatever
/// happens.
func withBackendsOnOwnPorts<Result>(
    _ stack: Stack,
    hosts: [String],
    _ body: (_ servers: [any Backend], _ ports: [Int]) async throws -> Result
) async throws -> Result {
    try await withBackends(stack, hosts: hosts, samePort: false, body)
}

private func withBackends<Result>(
    _ stack: Stack,
    hosts: [String],
    samePort: Bool,
    _ body: (_ servers: [any Backend], _ ports: [Int]) async throws -> Result
) async throws -> Result {
    var servers: [any Backend] = []
    var ports: [Int] = []
    do {
        for host in hosts {
            let port = samePort ? ports.first ?? 0 : 0
            // Listed before it starts, so that one that fails to start is halted too.
            switch stack {
            case .nio:
                let demo = DemoServer(host: host, port: port)
                servers.append(demo)
                try await demo.start()
                ports.append(demo.port)
            case .core:
                let core = CoreServer(host: host, port: port)
                servers.append(core)
                try await core.start()
                ports.append(core.port)
            }
        }
        let result = try await body(servers, ports)
        for server in servers { await server.halt() }
        return result
    } catch {
        for server in servers { await server.halt() }
        throw error
    }
}
