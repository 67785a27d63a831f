import ArgumentParser
import DemoServices
import GRPCPool
import InteropCases
import Logging

/// Runs gRPC's interop cases through the pooled transport against a TestService.
struct Interop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run gRPC interop test cases through the pool against a grpc.testing.TestService."
    )

    @Option(help: "HOST:PORT of a server implementing grpc.testing.TestService; omitted: a local one is started.")
    var target: String?

    @Option(name: .customLong("case"), help: "Run only this case (e.g. large_unary).")
    var testCase: String?

    @Option(help: "Connections in the pool.")
    var poolSize: Int = 2

    @Flag(help: "Show the pool's own log lines.")
    var verbose = false

    func run() async throws {
        let cases: [InteropCase]
        if let name = self.testCase {
            guard let testCase = InteropCase(rawValue: name) else {
                throw ValidationError(
                    "unknown case '\(name)'; known: \(InteropCase.allCases.map(\.name).joined(separator: ", "))"
                )
            }
            cases = [testCase]
        } else {
            cases = InteropCase.allCases
        }

        var local: DemoServer?
        let target: String
        if let given = self.target {
            target = given
        } else {
            let server = DemoServer()
            try await server.start()
            local = server
            target = server.target
        }
        let endpoint = try Endpoints.parse(target)
        var config = PoolManager.ServiceConfig(endpoints: [endpoint], poolSize: self.poolSize)
        config.timeout = .seconds(10)
        let manager = try PoolManager(services: ["interop": config], logger: .cli(verbose: self.verbose))

        var failures = 0
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { try await manager.run() }
            let client = try manager.client(for: "interop")
            for testCase in cases {
                let clock = ContinuousClock()
                let start = clock.now
                do {
                    try await testCase.run(using: client)
                    print("PASS  \(testCase.name)  (\(clock.now - start))")
                } catch {
                    failures += 1
                    print("FAIL  \(testCase.name): \(error)")
                }
            }
            manager.beginGracefulShutdown()
        }
        await local?.stop()
        print("\(cases.count - failures) passed, \(failures) failed")
        if failures > 0 { throw ExitCode.failure }
    }
}
