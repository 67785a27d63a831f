import DemoServices
import Tracing

/// Runs `body` with a started ``DemoServer`` and stops it afterwards, whatever happens.
func withDemoServer<Result>(
    port: Int = 0,
    tracer: (any Tracer)? = nil,
    _ body: (DemoServer) async throws -> Result
) async throws -> Result {
    let server = DemoServer(port: port, tracer: tracer)
    try await server.start()
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

/// Runs `body` with `count` started ``DemoServer``s and stops them afterwards, whatever happens.
func withDemoServers<Result>(
    _ count: Int,
    _ body: ([DemoServer]) async throws -> Result
) async throws -> Result {
    let servers = (0..<count).map { _ in DemoServer() }
    do {
        for server in servers { try await server.start() }
        let result = try await body(servers)
        for server in servers { await server.stop() }
        return result
    } catch {
        for server in servers { await server.stop() }
        throw error
    }
}
