/// The delays between reconnection attempts of one episode.
///
/// | attempt | delay (before ±20 % jitter) |
/// |---|---|
/// | 1 | `retryDelay` |
/// | 2 | `retryDelay` × 2 |
/// | k ≤ `maxRetries` | `retryDelay` × 2^(k−1), at most `maxRetryDelay` |
/// | k > `maxRetries` | `maxRetryDelay`: the pool never gives a connection up, it keeps trying at the cap |
///
/// The value is capped before the multiplication can overflow.
struct Backoff: Sendable, Hashable {
    var initial: Duration
    var maximum: Duration
    var fastAttempts: Int
    var jitter: Double = 0.2

    /// The delay before attempt `attempt` (1-based), without jitter.
    func baseDelay(attempt: Int) -> Duration {
        guard attempt <= self.fastAttempts else { return self.maximum }
        let exponent = min(max(attempt - 1, 0), 30)
        let scaled = self.initial * (1 << exponent)
        return min(scaled, self.maximum)
    }

    /// The delay with jitter drawn from `generator`.
    func delay(attempt: Int, using generator: inout some RandomNumberGenerator) -> Duration {
        let factor = Double.random(in: (1 - self.jitter)...(1 + self.jitter), using: &generator)
        return self.baseDelay(attempt: attempt) * factor
    }

    func delay(attempt: Int) -> Duration {
        var generator = SystemRandomNumberGenerator()
        return self.delay(attempt: attempt, using: &generator)
    }
}
