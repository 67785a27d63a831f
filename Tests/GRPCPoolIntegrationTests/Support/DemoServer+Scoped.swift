import DemoServices

/// Runs `body` with a started ``DemoServer`` and stops it afterwards, whatever happens.
func withDemoServer<Result>(
    port: Int = 0,
    _ body: (DemoServer) async throws -> Result
) async throws -> Result {
    let server = DemoServer(port: port)
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
