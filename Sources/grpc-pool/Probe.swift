import ArgumentParser
import DemoServices
import Foundation
import GRPCCore
import GRPCPool
import Logging
import SwiftProtobuf

/// Connects a pool to a server and reports whether it is healthy.
struct Probe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect a pool to a gRPC server and report its connections, health and latency.",
        discussion: "Exits 0 when the server is healthy, 1 when it is not, 2 on invalid options."
    )

    @Argument(help: "HOST:PORT, or a core target (dns:///host:port, ipv4:a:p,b:p, unix:/path).")
    var target: String

    @Option(help: "Connections in the pool.")
    var poolSize: Int = 2

    @Flag(help: "Use TLS (with the system's roots unless --ca is given).")
    var tls = false

    @Option(help: "PEM file of the CA to trust (implies --tls).")
    var ca: String?

    @Option(help: "PEM file of the client certificate chain, for mutual TLS.")
    var cert: String?

    @Option(help: "PEM file of the client private key, for mutual TLS.")
    var key: String?

    @Option(help: "Name to check the server certificate against.")
    var serverName: String?

    @Option(help: "The grpc.health.v1 service name to check (default: the whole server, \"\").")
    var healthService: String?

    @Option(help: "Keepalive interval in seconds.")
    var keepalive: Double = 10

    @Option(help: "Health checks to time.")
    var checks: Int = 5

    @Option(help: "Seconds to wait for the connections and each check.")
    var timeout: Double = 5

    @Flag(help: "Show the pool's own log lines.")
    var verbose = false

    func run() async throws {
        let config: PoolManager.ServiceConfig
        let manager: PoolManager
        do {
            var service = PoolManager.ServiceConfig(
                endpoints: [try Endpoints.parse(self.target)],
                poolSize: self.poolSize
            )
            service.keepaliveTime = .milliseconds(Int(self.keepalive * 1000))
            service.timeout = .milliseconds(Int(self.timeout * 1000))
            service.healthCheck.serviceName = self.healthService
            service.healthCheck.timeout = service.timeout
            // The checks go to a connection even when none is healthy, so that the core says why.
            service.whenNoneHealthy = .useAnyConnection
            service.enableRetries = false  // report the first error, not the last retry's
            if self.tls || self.ca != nil || self.cert != nil || self.key != nil {
                service.transportSecurity = .tls(
                    .init(
                        trustRoots: self.ca.map { .file(path: $0) },
                        certificateChain: self.cert.map { .file(path: $0) },
                        privateKey: self.key.map { .file(path: $0) },
                        serverHostnameOverride: self.serverName
                    )
                )
            }
            config = service
            manager = try PoolManager(services: ["probe": service], logger: .cli(verbose: self.verbose))
        } catch {
            print("error: \(error)")
            throw ExitCode(2)
        }

        let healthy = try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await manager.run()
                return true
            }
            defer { manager.beginGracefulShutdown() }
            return try await self.report(manager: manager, config: config)
        }
        if !healthy { throw ExitCode.failure }
    }

    private func report(manager: PoolManager, config: PoolManager.ServiceConfig) async throws -> Bool {
        let pool = try manager.pool(for: "probe")
        let security = config.transportSecurity == .plaintext ? "plaintext" : "TLS"
        print("probe \(self.target) (pool of \(config.poolSize), \(security))")

        // Wait for the connections, up to the timeout.
        _ = await pool.waitUntilHealthy(timeLimit: config.timeout)
        let clock = ContinuousClock()

        // Time the health checks (they also tell why a server is unreachable).
        let health = Grpc_Health_V1_Health.Client(wrapping: pool.client)
        let name = self.healthService ?? ""
        var options = CallOptions.defaults
        options.timeout = config.timeout
        options.waitForReady = false
        var latencies: [Duration] = []
        var status: String?
        var failure: RPCError?
        for _ in 0..<max(1, self.checks) {
            let start = clock.now
            do {
                let response = try await health.check(.with { $0.service = name }, options: options)
                latencies.append(clock.now - start)
                status = Self.name(response.status)
                if response.status != .serving { break }
            } catch let error as RPCError {
                failure = error
                break
            }
        }

        let metrics = pool.metrics()
        print("  addresses: \(metrics.addresses.count)")
        for address in metrics.addresses {
            let on = metrics.connections.filter { $0.address == address }.map { "\($0.index)" }
            print("    \(address)  connections: \(on.isEmpty ? "none" : on.joined(separator: ", "))")
        }
        if metrics.resolutionFailures > 0 {
            print("  lookups failed: \(metrics.resolutionFailures)")
        }
        for connection in metrics.connections {
            let since =
                connection.connectedSince.map { String(format: " for %.0f ms", (clock.now - $0).milliseconds) } ?? ""
            print(
                "  connection \(connection.index)  \(connection.address)  \(connection.state)"
                    + "  \(connection.isHealthy ? "healthy" : "unhealthy")\(since)"
            )
        }

        let healthy: Bool
        if let failure {
            if failure.code == .unimplemented, self.healthService == nil {
                print("  health: the server does not implement grpc.health.v1; judged by connectivity")
                healthy = pool.metrics().healthyConnections > 0
            } else {
                print("unhealthy: \(self.target): \(failure.code): \(Self.oneLine(failure.message))")
                return false
            }
        } else {
            print("  health \"\(name)\": \(status ?? "?")")
            healthy = status == "SERVING"
        }
        if !latencies.isEmpty {
            let sorted = latencies.sorted()
            let ms = { (d: Duration) in String(format: "%.2f ms", d.milliseconds) }
            print(
                "  health checks: \(latencies.count) ok, latency min \(ms(sorted.first!)), "
                    + "p50 \(ms(sorted[sorted.count / 2])), max \(ms(sorted.last!))"
            )
        }
        print(healthy ? "healthy" : "unhealthy: \(self.target): health status \(status ?? "unknown")")
        return healthy
    }

    static func name(_ status: Grpc_Health_V1_HealthCheckResponse.ServingStatus) -> String {
        switch status {
        case .serving: "SERVING"
        case .notServing: "NOT_SERVING"
        case .serviceUnknown: "SERVICE_UNKNOWN"
        case .unknown: "UNKNOWN"
        case .UNRECOGNIZED(let value): "\(value)"
        }
    }

    static func oneLine(_ text: String) -> String {
        text.split(whereSeparator: \.isNewline).joined(separator: " ")
    }
}
