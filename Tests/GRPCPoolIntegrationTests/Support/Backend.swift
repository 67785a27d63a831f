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
}

extension DemoServer: Backend {
    func halt() async { await self.stop() }
}

extension CoreServer: Backend {
    func halt() async { self.stop() }
}

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
