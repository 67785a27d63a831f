internal import Synchronization

/// Picking: a healthy connection with room, under the balancing policy.
extension ConnectionPool {
    /// What picking found.
    enum Pick {
        /// A healthy connection with room.
        case connection(PooledConnection)
        /// Healthy connections exist, but every one is at `streamCapacity`.
        case allAtCapacity
        /// No connection is healthy.
        case noneHealthy
    }

    /// A healthy connection with room under the balancing policy.
    func pickHealthy() -> Pick {
        let count = self.connections.count
        let start = self.cursor.wrappingAdd(1, ordering: .relaxed).oldValue
        var sawHealthy = false
        switch self.config.balancing.value {
        case .roundRobin:
            for offset in 0..<count {
                let connection = self.connections[(start &+ offset) % count]
                guard connection.isHealthy else { continue }
                sawHealthy = true
                if connection.hasRoom { return .connection(connection) }
            }
        case .leastInFlight:
            // Start at a rotating index so that ties spread.
            var best: PooledConnection?
            var bestLoad = Int.max
            for offset in 0..<count {
                let connection = self.connections[(start &+ offset) % count]
                guard connection.isHealthy else { continue }
                sawHealthy = true
                let load = connection.load
                if load < bestLoad && load < self.config.callCapacity {
                    best = connection
                    bestLoad = load
                }
            }
            if let best { return .connection(best) }
        case .leastBusy:
            // Power of two choices: two different candidates, each the first healthy connection
            // with room from a random place; the one with the lower cost wins.
            var mixer = SplitMix64(state: UInt64(truncatingIfNeeded: start))
            let random = mixer.next()
            let first = self.firstAvailable(from: Int(random % UInt64(count)))
            guard let first else { break }
            sawHealthy = true
            guard count > 1 else { return .connection(first) }
            let secondStart = first.index + 1 + Int((random >> 32) % UInt64(count - 1))
            guard let second = self.firstAvailable(from: secondStart), second !== first else {
                return .connection(first)
            }
            let now = ContinuousClock.now
            let firstWins = Self.lessBusy(
                (first.latencyEstimate(at: now), first.load),
                than: (second.latencyEstimate(at: now), second.load)
            )
            return .connection(firstWins ? first : second)
        }
        if !sawHealthy {
            sawHealthy = self.connections.contains { $0.isHealthy }
        }
        return sawHealthy ? .allAtCapacity : .noneHealthy
    }

    /// Least-busy's comparison: busy is the expected wait of one more call, (load + 1) × recent
    /// latency (in milliseconds, at least a microsecond, so that where latencies are equal or zero
    /// load decides). A connection whose first call has not ended yet counts as fast as the
    /// other: load decides between them, rather than an unknown latency passing for none (which
    /// drew every pick to a new connection, slow or not, until its first call came back).
    static func lessBusy(_ a: (latency: Double?, load: Int), than b: (latency: Double?, load: Int)) -> Bool {
        let latencyA = max(a.latency ?? b.latency ?? 0, 0.001)
        let latencyB = max(b.latency ?? a.latency ?? 0, 0.001)
        return latencyA * Double(a.load + 1) <= latencyB * Double(b.load + 1)
    }

    /// The first healthy connection with room at or after `index`, wrapping around.
    func firstAvailable(from index: Int) -> PooledConnection? {
        let count = self.connections.count
        for offset in 0..<count {
            let connection = self.connections[(index + offset) % count]
            if connection.isHealthy && connection.hasRoom { return connection }
        }
        return nil
    }
}
