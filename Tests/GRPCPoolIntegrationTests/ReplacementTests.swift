import DemoServices
import GRPCPool
import GRPCPoolCoreBridge
import Testing

@Suite("A replacement that never connects does not hold the connection's other events")
struct ReplacementTests {
    @Test(
        "An eject and a deactivate take effect while a replacement's connect never completes",
        arguments: Stack.allCases
    )
    func hungReplacement(stack: Stack) async throws {
        try await withBackend(stack) { server in
            let port = Int(server.target.split(separator: ":").last!)!
            let proxy = TCPProxy(targetPort: port)
            try await proxy.start()
            defer { Task { await proxy.stop() } }
            let config = testConfig([proxy.target], poolSize: 2) { config in
                // The replacement's connect would wait this long; the test is over well before.
                config.timeout = .seconds(60)
                config.maxConnectionAge = .seconds(1)
            }
            try await withPoolManager(["echo": config]) { manager in
                let connection = try manager.pool(for: "echo").connections[0]
                // From now on a new TCP connection is accepted and never answered: the
                // maxConnectionAge replacement hangs in its HTTP/2 handshake. The checks look at
                // connectivity only, so the current channel stays in rotation meanwhile.
                proxy.mode = .blackHole
                #expect(await poll(timeLimit: .seconds(10)) { connection.connectingReplacement != nil })
                guard let hung = connection.connectingReplacement else { return }
                #expect(connection.isHealthy, "make before break: it serves while the replacement connects")

                connection.eject(failures: 3)
                #expect(!connection.isHealthy && connection.isEjected, "out of rotation at once")
                #expect(hung.channel.state() == .shutdown, "the hung attempt is cancelled")
                #expect(
                    await poll(timeLimit: .seconds(5)) { (connection.connectingReplacement?.id ?? 0) > hung.id },
                    "the ejection's own replacement starts while the first never connected"
                )
                guard let second = connection.connectingReplacement else { return }

                connection.deactivate()
                #expect(!connection.isActive && !connection.isHealthy, "out of the working set at once")
                #expect(second.channel.state() == .shutdown && connection.connectingReplacement == nil)
                #expect(connection.metrics().ejections == 1)
            }
        }
    }
}
