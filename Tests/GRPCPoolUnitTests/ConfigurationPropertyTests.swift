import Foundation
import GRPCCore
import PropertyBased
import Testing

@testable import GRPCPool

/// Property-based checks of configuration and targets: random combinations, valid and not, are
/// judged by an independent oracle; the library must agree, throw its typed error naming an
/// offending field, and never crash.
@Suite("Configuration properties")
struct ConfigurationPropertyTests {
    typealias Config = PoolManager.ServiceConfig

    static let hosts = ["localhost", "127.0.0.1", "::1", "svc.example.com", "", " ", "a b", "x/y"]

    @Test("Every combination is accepted exactly when valid; a rejection names an invalid field and its value")
    func serviceConfig() async {
        await propertyCheck(
            count: 500,
            input: Gen.element(of: Self.hosts),
            Gen.int(in: -10...70_000),
            Gen.int(in: -3...1_100),
            Gen.int(in: -3...12),
            Gen.int(in: -50...600),
            Gen.int(in: -50...2_000),
            Gen.int(in: -100...6_000),
            Gen.int(in: 0...7)
        ) { element, port, poolSize, maxRetries, retryDelayMs, maxRetryDelayMs, timeoutMs, attempts in
            let host = element ?? ""
            var config = Config(
                host: host,
                port: port,
                poolSize: poolSize,
                maxRetries: maxRetries,
                retryDelay: .milliseconds(retryDelayMs),
                timeout: .milliseconds(timeoutMs)
            )
            config.maxRetryDelay = .milliseconds(maxRetryDelayMs)
            config.retryPolicy.maxAttempts = attempts

            // The oracle: which fields are wrong, by the documented rules.
            var invalid: Set<String> = []
            let trimmed = host.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || host.contains(where: { $0.isWhitespace || $0 == "/" }) { invalid.insert("host") }
            if !(1...65_535).contains(port) { invalid.insert("port") }
            if !(1...Config.maxPoolSize).contains(poolSize) { invalid.insert("poolSize") }
            if maxRetries < 0 { invalid.insert("maxRetries") }
            if retryDelayMs <= 0 { invalid.insert("retryDelay") }
            if maxRetryDelayMs <= 0 || maxRetryDelayMs < retryDelayMs { invalid.insert("maxRetryDelay") }
            if timeoutMs <= 0 { invalid.insert("timeout") }
            if !(2...5).contains(attempts) { invalid.insert("retryPolicy.maxAttempts") }

            do {
                try config.validate()
                #expect(invalid.isEmpty, "accepted, but \(invalid.sorted()) are invalid")
            } catch let error as ConfigurationError {
                #expect(
                    invalid.contains(error.field),
                    "rejected \(error.field) (\(error)); invalid: \(invalid.sorted())"
                )
                #expect("\(error)".contains(error.field) && "\(error)".contains(error.value))
            } catch {
                Issue.record("not a ConfigurationError: \(error)")
            }
            // The manager refuses the same configurations, with the same typed error.
            if !invalid.isEmpty {
                #expect(throws: ConfigurationError.self) { _ = try PoolManager(services: ["svc": config]) }
            }
        }
    }

    @Test("Any text either parses to an endpoint that round-trips, or is refused; nothing crashes")
    func targets() async {
        let pieces = [
            "localhost", "127.0.0.1", "[::1]", "::1", ":", "80", "65535", "70000", "-1", "a b", "dns:///x:1", "ipv4:",
            "unix:/tmp/s", "", "]", "[",
        ]
        await propertyCheck(count: 500, input: Gen.element(of: pieces).array(of: 1...4)) { parts in
            let text = parts.compactMap { $0 }.joined()
            guard let endpoint = PoolManager.Endpoint(parsing: text) else { return }
            if endpoint.target == nil {
                #expect(PoolManager.Endpoint(parsing: endpoint.description) == endpoint, "\(text) → \(endpoint)")
            }
            var config = Config(endpoints: [endpoint])
            config.poolSize = 1
            do {
                try config.validate()
            } catch let error as ConfigurationError {
                #expect(!error.field.isEmpty, "\(text)")
            } catch {
                Issue.record("not a ConfigurationError: \(error)")
            }
        }
    }
}
