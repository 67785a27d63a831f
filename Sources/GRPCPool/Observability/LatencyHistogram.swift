/// A log-linear latency histogram: 16 buckets per power of two of microseconds, so any
/// percentile is within about 6 % of the true value; fixed size, cheap to record and to merge.
struct LatencyHistogram: Sendable, Hashable {
    private static let subBuckets = 16
    private static let powers = 40  // up to 2^40 µs ≈ 12 days
    private var counts: [UInt64]
    private(set) var count: UInt64 = 0
    private(set) var sum: Duration = .zero

    init() {
        self.counts = Array(repeating: 0, count: Self.subBuckets * Self.powers)
    }

    mutating func record(_ latency: Duration) {
        self.counts[Self.bucket(for: latency)] += 1
        self.count += 1
        self.sum += latency
    }

    mutating func merge(_ other: LatencyHistogram) {
        for index in self.counts.indices { self.counts[index] += other.counts[index] }
        self.count += other.count
        self.sum += other.sum
    }

    /// The mean, or zero when empty.
    var mean: Duration {
        self.count == 0 ? .zero : self.sum / Int(self.count)
    }

    /// The latency below which `fraction` (0…1) of the samples lie (upper edge of its bucket).
    func percentile(_ fraction: Double) -> Duration {
        guard self.count > 0 else { return .zero }
        let rank = max(1, UInt64((Double(self.count) * fraction).rounded(.up)))
        var seen: UInt64 = 0
        for (index, count) in self.counts.enumerated() where count > 0 {
            seen += count
            if seen >= rank { return Self.upperBound(of: index) }
        }
        return Self.upperBound(of: self.counts.count - 1)
    }

    private static func bucket(for latency: Duration) -> Int {
        let micros = max(latency.microseconds, 1)
        let power = min(Int.bitWidth - 1 - micros.leadingZeroBitCount, powers - 1)
        // Within [2^power, 2^(power+1)), 16 equal sub-buckets.
        let base = 1 << power
        let sub = power >= 4 ? (micros - base) >> (power - 4) : (micros - base) * subBuckets / base
        return power * subBuckets + min(sub, subBuckets - 1)
    }

    private static func upperBound(of index: Int) -> Duration {
        let power = index / subBuckets
        let sub = index % subBuckets
        let base = Double(1 << power)
        return .microseconds(base + base * Double(sub + 1) / Double(subBuckets))
    }
}

extension Duration {
    /// Whole microseconds (truncated), at least zero.
    var microseconds: Int {
        let (seconds, attoseconds) = self.components
        return max(0, Int(seconds) * 1_000_000 + Int(attoseconds / 1_000_000_000_000))
    }

    /// Milliseconds as a `Double`.
    var milliseconds: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }
}
