import DemoServices
import Foundation
import GRPCPool

/// The defaults against the tuned path: the pool as a user gets it without tuning (gzip above
/// its threshold, retries, a 10 s deadline) beside the tuned pool (both off, no deadline), the
/// defaults as they were before (every message gzipped, GRPCCore's retry executor), and
/// grpc-swift-2's NIO client on the defaults' settings, against one server of each stack.
extension BenchSession {
    /// The workloads: a unary call of 32 B and of 1 KiB, and a stream of 10 ping-pongs of 32 B
    /// (its CPU per message is a tenth of the row's per stream).
    enum DefaultsWorkload: String, CaseIterable {
        case unary32 = "unary 32 B"
        case unary1K = "unary 1 KiB"
        case bidi32 = "bidi 10×32 B"

        var key: String {
            switch self {
            case .unary32: "unary32"
            case .unary1K: "unary1k"
            case .bidi32: "bidi32"
            }
        }

        func poolCall(_ clients: BenchClients, _ settings: BenchSettings) -> @Sendable () async throws -> Void {
            switch self {
            case .unary32: { try await clients.poolStub(Self.small, settings: settings) }
            case .unary1K: { try await clients.poolStub(Self.kibibyte, settings: settings) }
            case .bidi32: { try await clients.poolPingPong(Self.small, settings: settings) }
            }
        }

        func nioCall(_ clients: BenchClients, _ settings: BenchSettings) -> @Sendable () async throws -> Void {
            switch self {
            case .unary32: { try await clients.nio(Self.small, settings: settings) }
            case .unary1K: { try await clients.nio(Self.kibibyte, settings: settings) }
            case .bidi32: { try await clients.nioPingPong(Self.small, settings: settings) }
            }
        }

        static let small = [UInt8](repeating: 7, count: 32)
        static let kibibyte = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 31) }
    }

    /// The defaults section against `server` (`nio` or `grpcio`): per concurrency and workload,
    /// tuned, defaults and the defaults before, twice in turn, then the NIO client on the
    /// defaults' settings; the CPU ratios go to ``ratios``.
    func defaultsRows(server name: String, clients: BenchClients, serverPID: Int32) async throws {
        self.say("")
        self.say("defaults against tuned, \(name) server (defaults: gzip ≥ 2 KiB, retries, 10 s deadline)")
        for level in [1, 16] {
            for workload in DefaultsWorkload.allCases {
                var cpu: [BenchSettings: [Double]] = [:]
                for settings in [BenchSettings.tuned, .defaults, .before, .tuned, .defaults, .before] {
                    let row = try await self.measure(
                        "(a) pool, \(settings.rawValue)",
                        workload.rawValue,
                        concurrency: level,
                        serverPID: serverPID,
                        workload.poolCall(clients, settings)
                    )
                    cpu[settings, default: []].append(row.cpuPerCall)
                }
                let nio = try await self.measure(
                    "(c) NIO, defaults",
                    workload.rawValue,
                    concurrency: level,
                    serverPID: serverPID,
                    workload.nioCall(clients, .defaults)
                )
                let mean = { (settings: BenchSettings) in (cpu[settings] ?? []).reduce(0, +) / 2 }
                let key = "\(name)_\(workload.key)_c\(level)"
                self.ratios["defaults_vs_tuned_cpu_\(key)"] = mean(.defaults) / mean(.tuned)
                self.ratios["before_vs_tuned_cpu_\(key)"] = mean(.before) / mean(.tuned)
                self.ratios["pool_vs_nio_defaults_cpu_\(key)"] = mean(.defaults) / nio.cpuPerCall
            }
        }
    }
}
