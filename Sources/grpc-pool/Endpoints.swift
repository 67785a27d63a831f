import ArgumentParser
import GRPCPool

enum Endpoints {
    /// `host:port`, `[v6]:port`, or a core target with a scheme (`dns:///…`, `ipv4:…`, `unix:…`).
    static func parse(_ text: String) throws -> PoolManager.Endpoint {
        if text.contains("://") || text.hasPrefix("ipv4:") || text.hasPrefix("ipv6:") || text.hasPrefix("unix:") {
            return PoolManager.Endpoint(target: text)
        }
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            throw ValidationError("target '\(text)' is not HOST:PORT")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return PoolManager.Endpoint(host: host, port: port)
    }
}
