internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import SwiftProtobuf

/// What one health check found.
enum HealthProbe: Sendable, Equatable {
    case healthy
    /// Not decided yet: the channel is connecting (the core times the attempt out on its own).
    case pending
    /// Not usable now; `replace` when a new channel might help (unresponsive, connection failed)
    /// rather than the server saying it does not serve.
    case unhealthy(reason: String, replace: Bool)
}

extension PooledConnection {
    /// Checks `channel` (by default the current one) now: its connectivity, and when the config
    /// names a health service, `grpc.health.v1.Health/Check` with the health-check timeout.
    func probe(_ channel: CoreChannel? = nil) async -> HealthProbe {
        let channel = channel ?? self.channel
        guard let serviceName = self.config.healthCheck.serviceName else {
            switch channel.state() {
            case .ready:
                return .healthy
            case .idle:
                // Pooled connections stay warm: an idle one (lost, or idle-timed-out) reconnects.
                _ = channel.state(tryToConnect: true)
                return .pending
            case .connecting:
                return .pending
            case .transientFailure:
                return .unhealthy(reason: "connection failed (transient failure)", replace: true)
            case .shutdown:
                return .unhealthy(reason: "channel is shut down", replace: true)
            }
        }
        return await self.check(serviceName: serviceName, on: channel, timeout: self.config.healthCheck.timeout)
    }

    /// Why the channel cannot connect now, in the core's words, or `nil` when it is not failing:
    /// a call that does not wait for the connection fails at once with them (`failed to connect
    /// to all addresses; last error: … Connection refused`). No stream reaches the wire.
    func connectionFailure() async -> String? {
        let channel = self.channel
        guard channel.state() == .transientFailure else { return nil }
        self.countOwnRPC(on: channel)
        do {
            _ = try await channel.unary(
                method: "/grpc.health.v1.Health/Check",
                request: [],
                options: CoreCallOptions(timeout: .seconds(1), waitForReady: false, compressionThreshold: .max)
            )
            return nil
        } catch {
            return "connection failed: \(error.message)"
        }
    }

    /// Counts an RPC of the pool's own on `channel` (``ConnectionMetrics/ownRPCs``).
    private func countOwnRPC(on channel: CoreChannel) {
        self.storage.withLock { $0.stats.ownRPCs.add(on: channel) }
    }

    /// One `grpc.health.v1.Health/Check` call of the pool's own (a health check, a keepalive
    /// RPC), counted on `channel`.
    func check(serviceName: String, on channel: CoreChannel, timeout: Duration) async -> HealthProbe {
        self.countOwnRPC(on: channel)
        let request = Grpc_Health_V1_HealthCheckRequest.with { $0.service = serviceName }
        do {
            let bytes: [UInt8] = try request.serializedBytes()
            let response = try await channel.unary(
                method: "/grpc.health.v1.Health/Check",
                request: bytes,
                // The pool's own RPC: a few bytes, never worth compressing.
                options: CoreCallOptions(timeout: timeout, compressionThreshold: .max)
            )
            let message = try Grpc_Health_V1_HealthCheckResponse(serializedBytes: response.message)
            let status: String
            switch message.status {
            case .serving: return .healthy
            case .notServing: status = "NOT_SERVING"
            case .serviceUnknown: status = "SERVICE_UNKNOWN"
            case .unknown: status = "UNKNOWN"
            case .UNRECOGNIZED(let value): status = "\(value)"
            }
            return .unhealthy(reason: "health status of '\(serviceName)' is \(status)", replace: false)
        } catch let error as RPCError {
            switch error.code {
            case .deadlineExceeded:
                return .unhealthy(reason: "health check got no answer within \(timeout) (unresponsive)", replace: true)
            case .unavailable:
                return .unhealthy(reason: "health check failed: \(error.message)", replace: true)
            default:
                return .unhealthy(reason: "health check failed: \(error.code): \(error.message)", replace: false)
            }
        } catch {
            return .unhealthy(reason: "health check answer is not a HealthCheckResponse: \(error)", replace: false)
        }
    }
}
