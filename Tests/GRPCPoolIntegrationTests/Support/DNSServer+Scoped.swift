import DemoServices

/// Runs `body` with a started ``DNSServer`` serving `records`, stopped afterwards whatever happens.
func withDNSServer<Result>(
    _ records: [String: [String]],
    _ body: (DNSServer) async throws -> Result
) async throws -> Result {
    let server = try await DNSServer.start(records)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}
