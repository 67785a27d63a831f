internal import Foundation

/// A connection's recent latency, as least-busy balancing sees it: a moving average that jumps
/// up to any slower call at once and decays toward faster ones (and, when no call finishes, toward
/// zero) with a time constant of ``decay``.
///
/// This is the "peak EWMA" of Finagle and of Linkerd's `tower` balancer. Jumping up on a peak
/// moves traffic off a connection the moment it turns slow; decaying with time, rather than per
/// sample, makes the estimate independent of the call rate, and lets a connection that was slow
/// and got no traffic be tried again after a while.
struct PeakEWMA: Sendable {
    /// How fast old observations fade: after `decay`, an observation weighs 1/e. Ten seconds, as
    /// in Finagle and Linkerd: a connection that was slow is tried again (its estimate falls below
    /// the others' costs) every few seconds, not several times a second; with one second, those
    /// probes alone put about 1 % of the calls on a 100 ms endpoint at 1,000 calls/s, enough to
    /// set the p99 (measured in `grpc-pool bench`'s slow-endpoint rows).
    static let decay: Duration = .seconds(10)

    private var milliseconds: Double = 0
    private var updated: ContinuousClock.Instant

    init(now: ContinuousClock.Instant = .now) {
        self.updated = now
    }

    /// Folds in one call's latency.
    mutating func record(_ latency: Duration, at now: ContinuousClock.Instant = .now) {
        let sample = latency.milliseconds
        if sample > self.milliseconds {
            self.milliseconds = sample
        } else {
            let weight = Self.weight(of: now - self.updated)
            self.milliseconds = self.milliseconds * weight + sample * (1 - weight)
        }
        self.updated = max(self.updated, now)
    }

    /// The estimate at `now`: what was recorded, faded by the time since.
    func estimate(at now: ContinuousClock.Instant = .now) -> Duration {
        .milliseconds(self.milliseconds * Self.weight(of: now - self.updated))
    }

    private static func weight(of elapsed: Duration) -> Double {
        guard elapsed > .zero else { return 1 }
        return exp(-elapsed.milliseconds / Self.decay.milliseconds)
    }
}
