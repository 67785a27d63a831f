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

extension ConnectionPool {
    /// Waits until every connection of the pool is healthy, for at most `timeLimit`; returns
    /// either way (the caller reports what it finds).
    func waitUntilHealthy(timeLimit: Duration) async throws {
        let deadline = ContinuousClock.now.advanced(by: timeLimit)
        while self.metrics().healthyConnections < self.config.poolSize, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}
