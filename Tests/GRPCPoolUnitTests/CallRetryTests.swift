import GRPCCore
import GRPCPoolCoreBridge
import Testing

@testable import GRPCPool

@Suite("A unary RPC's retries (gRFC A6)")
struct CallRetryTests {
    static let start = ContinuousClock.now

    static func status(_ code: Status.Code, pushback: String? = nil) -> CallStatus {
        var metadata: Metadata = [:]
        if let pushback { metadata.addString(pushback, forKey: "grpc-retry-pushback-ms") }
        return CallStatus(code: code, message: "", trailingMetadata: metadata)
    }

    @Test(
        "What ends the RPC at once",
        arguments: [
            (Status.Code.ok, nil as String?), (.deadlineExceeded, nil), (.internalError, nil),
            (.unavailable, "-1"), (.unavailable, "soon"),
        ]
    )
    func stops(code: Status.Code, pushback: String?) {
        var retry = CallRetry(policy: .defaults, deadline: nil)
        #expect(retry.next(after: Self.status(code, pushback: pushback), now: Self.start, random: 0.5) == .stop)
        #expect(retry.attempts == 1)
    }

    @Test("Backoff: random in [0, min(100 ms × 2^(n−1), 1 s)), and no retry past maxAttempts")
    func backoff() {
        var policy = PoolManager.CallRetryPolicy.defaults
        policy.maxAttempts = 5
        var retry = CallRetry(policy: policy, deadline: nil)
        let unavailable = Self.status(.unavailable)
        // The caps are 100, 200, 400, 800 ms; half of each with random 0.5.
        let delays = (0..<4).map { _ in retry.next(after: unavailable, now: Self.start, random: 0.5) }
        #expect(
            delays == [
                .retry(after: .milliseconds(50)), .retry(after: .milliseconds(100)), .retry(after: .milliseconds(200)),
                .retry(after: .milliseconds(400)),
            ]
        )
        #expect(retry.attempts == 5)
        #expect(retry.next(after: unavailable, now: Self.start, random: 0.5) == .stop)
    }

    @Test("The cap is maxBackoff")
    func cap() {
        var policy = PoolManager.CallRetryPolicy.defaults
        policy.maxAttempts = 8
        policy.initialBackoff = .milliseconds(400)
        var retry = CallRetry(policy: policy, deadline: nil)
        let delays = (0..<4).map { _ in retry.next(after: Self.status(.unavailable), now: Self.start, random: 0.75) }
        #expect(
            delays == [
                .retry(after: .milliseconds(300)), .retry(after: .milliseconds(600)),
                .retry(after: .milliseconds(750)), .retry(after: .milliseconds(750)),
            ]
        )
    }

    @Test("The server's pushback sets the delay and starts the backoff over")
    func pushback() {
        var retry = CallRetry(policy: .defaults, deadline: nil)
        let unavailable = Self.status(.unavailable)
        #expect(
            retry.next(after: Self.status(.unavailable, pushback: "250"), now: Self.start, random: 0.5)
                == .retry(after: .milliseconds(250))
        )
        #expect(retry.next(after: unavailable, now: Self.start, random: 0.5) == .retry(after: .milliseconds(50)))
    }

    @Test("Only the codes the policy names are retried")
    func codes() {
        var policy = PoolManager.CallRetryPolicy.defaults
        policy.retryableStatusCodes = ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]
        var retry = CallRetry(policy: policy, deadline: nil)
        #expect(retry.next(after: Self.status(.resourceExhausted), now: Self.start, random: 0) == .retry(after: .zero))
        #expect(retry.next(after: Self.status(.aborted), now: Self.start, random: 0) == .stop)
    }

    @Test("A retry that would start at or after the deadline is not made")
    func deadline() {
        var retry = CallRetry(policy: .defaults, deadline: Self.start.advanced(by: .milliseconds(60)))
        let unavailable = Self.status(.unavailable)
        #expect(retry.next(after: unavailable, now: Self.start, random: 0.5) == .retry(after: .milliseconds(50)))
        #expect(retry.next(after: unavailable, now: Self.start.advanced(by: .milliseconds(10)), random: 0.5) == .stop)
    }
}
