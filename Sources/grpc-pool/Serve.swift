import ArgumentParser
import DemoServices

/// Runs the demo server (echo, health, interop TestService, stt/nlp/summary) until interrupted.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve bench.Echo, grpc.health.v1, grpc.testing.TestService and the demo services on loopback."
    )

    @Option(help: "The port to listen on (0 picks a free one).")
    var port: Int = 0

    @Option(help: "The address to bind.")
    var host: String = "127.0.0.1"

    @Option(help: "Limit on concurrent streams per connection (HTTP/2 SETTINGS).")
    var maxConcurrentStreams: Int?

    @Option(help: "Extra milliseconds every call waits before it is answered (a slow endpoint).")
    var delayMs: Int = 0

    func run() async throws {
        let server = DemoServer(host: self.host, port: self.port, maxConcurrentStreams: self.maxConcurrentStreams)
        server.behaviour = .init(delay: .milliseconds(self.delayMs))
        try await server.start()
        writeLine("listening on \(server.target)")
        while !Task.isCancelled {
            try await Task.sleep(for: .seconds(3600))
        }
    }
}
