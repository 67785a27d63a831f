public import GRPCCore
private import NIOConcurrencyHelpers
internal import SwiftProtobuf

/// `grpc.health.v1.Health` with a settable status per service name.
///
/// The empty name stands for the whole server and starts as `SERVING`. `Check` on an unknown
/// name fails with NOT_FOUND; `Watch` sends the current status at once, then every change.
public final class HealthService: Grpc_Health_V1_Health.SimpleServiceProtocol, Sendable {
    public typealias ServingStatus = Grpc_Health_V1_HealthCheckResponse.ServingStatus

    private let state = NIOLockedValueBox(State())

    private struct State {
        var statuses: [String: ServingStatus] = ["": .serving]
        var watchers: [Int: (service: String, continuation: AsyncStream<ServingStatus>.Continuation)] = [:]
        var nextWatcher = 0
        var checks = 0
    }

    public init() {}

    /// Sets the status of `service` ("" for the whole server) and tells its watchers.
    public func setStatus(_ status: ServingStatus, forService service: String = "") {
        let watchers = self.state.withLockedValue { state in
            state.statuses[service] = status
            return state.watchers.values.filter { $0.service == service }.map(\.continuation)
        }
        for watcher in watchers { watcher.yield(status) }
    }

    /// The status of `service`, if it is known.
    public func status(forService service: String = "") -> ServingStatus? {
        self.state.withLockedValue { $0.statuses[service] }
    }

    /// `Check` calls received.
    public var checks: Int { self.state.withLockedValue { $0.checks } }

    public func check(
        request: Grpc_Health_V1_HealthCheckRequest,
        context: ServerContext
    ) async throws -> Grpc_Health_V1_HealthCheckResponse {
        let status = self.state.withLockedValue { state in
            state.checks += 1
            return state.statuses[request.service]
        }
        guard let status else {
            throw RPCError(code: .notFound, message: "unknown service '\(request.service)'")
        }
        return .with { $0.status = status }
    }

    public func watch(
        request: Grpc_Health_V1_HealthCheckRequest,
        response: RPCWriter<Grpc_Health_V1_HealthCheckResponse>,
        context: ServerContext
    ) async throws {
        let (stream, continuation) = AsyncStream.makeStream(of: ServingStatus.self)
        let id = self.state.withLockedValue { state in
            let id = state.nextWatcher
            state.nextWatcher += 1
            state.watchers[id] = (request.service, continuation)
            continuation.yield(state.statuses[request.service] ?? .serviceUnknown)
            return id
        }
        defer { _ = self.state.withLockedValue { $0.watchers.removeValue(forKey: id) } }
        try await withRPCCancellationHandler {
            for await status in stream {
                try await response.write(.with { $0.status = status })
            }
        } onCancelRPC: {
            continuation.finish()
        }
    }
}
