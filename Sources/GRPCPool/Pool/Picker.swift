/// What the picker reads of a connection.
protocol PickCandidate {
    var isHealthy: Bool { get }
    /// Calls plus leases on it now.
    var load: Int { get }
    /// Recent latency in milliseconds; `nil` before its first call has ended.
    func latencyEstimate(at now: ContinuousClock.Instant) -> Double?
}

/// Picking's decision: a healthy connection with room, under the balancing policy. A value:
/// the candidates, where to start and the time are passed in; the pool keeps the rotating start
/// and carries out the pick.
struct Picker: Sendable {
    /// What picking found.
    enum Pick: Sendable, Equatable {
        /// A healthy connection with room: its index among the candidates.
        case connection(Int)
        /// Healthy connections exist, but every one is full.
        case allAtCapacity
        /// No connection is healthy.
        case noneHealthy
    }

    let balancing: BalancingPolicy
    /// Calls one connection carries at most.
    let capacity: Int

    /// The pick among `candidates`: `start` rotates from call to call (round robin's next,
    /// least-in-flight's tie-break, least-busy's random draw).
    func pick<Candidate: PickCandidate>(
        from candidates: [Candidate],
        start: Int,
        now: @autoclosure () -> ContinuousClock.Instant
    ) -> Pick {
        let found: Int?
        switch self.balancing.value {
        case .roundRobin:
            found = self.firstAvailable(in: candidates, from: start)
        case .leastInFlight:
            found = self.leastLoaded(in: candidates, from: start)
        case .leastBusy:
            found = self.lessBusyOfTwo(in: candidates, start: start, now: now())
        }
        if let found { return .connection(found) }
        return candidates.contains { $0.isHealthy } ? .allAtCapacity : .noneHealthy
    }

    private func hasRoom(_ candidate: some PickCandidate) -> Bool {
        candidate.isHealthy && candidate.load < self.capacity
    }

    /// Where the first healthy candidate with room at or after `index` is, wrapping around.
    private func firstAvailable<Candidate: PickCandidate>(in candidates: [Candidate], from index: Int) -> Int? {
        let count = candidates.count
        for offset in 0..<count {
            let at = (index &+ offset) % count
            if self.hasRoom(candidates[at]) { return at }
        }
        return nil
    }

    /// The healthy candidate with room and the least load; ties go to the first from `start`.
    private func leastLoaded<Candidate: PickCandidate>(in candidates: [Candidate], from start: Int) -> Int? {
        var best: Int?
        var bestLoad = Int.max
        let count = candidates.count
        for offset in 0..<count {
            let at = (start &+ offset) % count
            let candidate = candidates[at]
            guard candidate.isHealthy else { continue }
            let load = candidate.load
            if load < bestLoad && load < self.capacity {
                best = at
                bestLoad = load
            }
        }
        return best
    }

    /// Power of two choices: two different candidates, each the first healthy one with room from
    /// a random place; the one with the lower cost (``lessBusy(_:than:)``) wins.
    private func lessBusyOfTwo<Candidate: PickCandidate>(
        in candidates: [Candidate],
        start: Int,
        now: ContinuousClock.Instant
    ) -> Int? {
        let count = candidates.count
        guard count > 0 else { return nil }
        var mixer = SplitMix64(state: UInt64(truncatingIfNeeded: start))
        let random = mixer.next()
        guard let first = self.firstAvailable(in: candidates, from: Int(random % UInt64(count))) else {
            return nil
        }
        guard count > 1 else { return first }
        let secondStart = first + 1 + Int((random >> 32) % UInt64(count - 1))
        guard let second = self.firstAvailable(in: candidates, from: secondStart), second != first else {
            return first
        }
        let firstWins = Self.lessBusy(
            (candidates[first].latencyEstimate(at: now), candidates[first].load),
            than: (candidates[second].latencyEstimate(at: now), candidates[second].load)
        )
        return firstWins ? first : second
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
}
