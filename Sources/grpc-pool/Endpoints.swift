import ArgumentParser
import GRPCPool

enum Endpoints {
    /// A command-line target as an endpoint (see `PoolManager.Endpoint(parsing:)`).
    static func parse(_ text: String) throws -> PoolManager.Endpoint {
        guard let endpoint = PoolManager.Endpoint(parsing: text) else {
            throw ValidationError("target '\(text)' is not HOST:PORT")
        }
        return endpoint
    }
}
