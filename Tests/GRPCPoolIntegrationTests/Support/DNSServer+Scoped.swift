import DemoServices

/// Runs `body` with a started ``DNSServer`` serving `records` and `services` with `ttl`, stopped afterwards whatever happens.
func withDNSServer<Result>(
    _ records: [String: [String]],
    services: [DNSServer.ServiceRecord] = [],
    ttl: Int = 0,
    _ body: (DNSServer) async throws -> Result
) async throws -> Result {
    let server = try await DNSServer.start(records, services: services, ttl: ttl)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}
