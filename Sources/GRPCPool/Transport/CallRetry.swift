internal import GRPCCore
internal import GRPCPoolCoreBridge

/// Whether, and after how long, a unary RPC that failed is sent again (gRFC A6), as a value:
/// the attempt's status and the time are passed in.
///
/// - A status that is OK, or whose code is not retryable, ends the RPC; so does the last of
///   `maxAttempts`.
/// - The server's `grpc-retry-pushback-ms` decides when it says: a delay of that many
///   milliseconds (after which the backoff starts over), or, negative or not a number, no retry
///   at all. The pool's own refusals say -1.
/// - Otherwise retry *n* waits a random time in [0, min(initialBackoff × multiplier^(n−1),
///   maxBackoff)).
/// - A retry that could not start before the RPC's deadline is not made: the caller gets the
///   failure at once rather than DEADLINE_EXCEEDED later.
struct CallRetry: Sendable {
    let policy: PoolManager.CallRetryPolicy
    let retryableCodes: Set<Status.Code>
    /// The RPC's deadline, if it has one.
    let deadline: ContinuousClock.Instant?
    /// Attempts made so far.
    private(set) var attempts = 1
    /// Retries since the backoff last started over.
    private var backoffStep = 0

    init(policy: PoolManager.CallRetryPolicy, deadline: ContinuousClock.Instant?) {
        self.policy = policy
        self.retryableCodes = Set(policy.retryableStatusCodes.compactMap(Status.Code.init(name:)))
        self.deadline = deadline
    }

    enum Decision: Sendable, Equatable {
        /// Send the request again after this delay.
        case retry(after: Duration)
        /// The RPC ends with the attempt's status.
        case stop
    }

    /// The decision after an attempt ended with `status` at `now`; `random` is drawn from [0, 1).
    mutating func next(after status: CallStatus, now: ContinuousClock.Instant, random: Double) -> Decision {
        guard status.code != .ok, self.retryableCodes.contains(status.code), self.attempts < self.policy.maxAttempts
        else { return .stop }
        let delay: Duration
        var pushbacks = status.trailingMetadata[stringValues: Refusal.pushbackKey].makeIterator()
        if let pushback = pushbacks.next() {
            guard let milliseconds = Int(pushback), milliseconds >= 0 else { return .stop }
            delay = .milliseconds(milliseconds)
            self.backoffStep = 0
        } else {
            var cap = min(self.policy.initialBackoff, self.policy.maxBackoff)
            for _ in 0..<self.backoffStep { cap = min(cap * self.policy.backoffMultiplier, self.policy.maxBackoff) }
            delay = cap * random
            self.backoffStep += 1
        }
        if let deadline = self.deadline, now.advanced(by: delay) >= deadline { return .stop }
        self.attempts += 1
        return .retry(after: delay)
    }
}
