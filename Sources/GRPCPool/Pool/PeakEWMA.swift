internal import Foundation

/// A connection's recent latency, as least-busy balancing sees it: a moving average that jumps
/// up to any slower call at once, moves toward faster calls by a tenth per call, and, while no call
/// finishes, decays toward zero with a time constant of ``decay``.
///
/// This is the "peak EWMA" of Finagle and of Linkerd's `tower` balancer, with one change: their
/// average moves toward a faster sample by time alone (a weight of e^(-Δt/decay)), so a connection
/// with many calls keeps a single slow call's peak for seconds. On a busy client, where any call
/// can be slowed by its own scheduling, that made a fast connection look as slow as a really slow
/// one (measured: a 100 ms endpoint got 2.4 % of the calls instead of none). Here each faster call
/// also takes at least a tenth of the gap, so a peak fades after a few dozen calls; a connection
/// that gets no calls (a slow one, avoided) still decays by time only, and is tried again after a
/// while.
struct PeakEWMA: Sendable {
    /// How fast old observations fade: after `decay`, an observation weighs 1/e. Ten seconds, as
    /// in Finagle and Linkerd: a connection that was slow is tried again (its estimate falls below
    /// the others' costs) every few seconds, not several times a second; with one second, those
    /// probes alone put about 1 % of the calls on a 100 ms endpoint at 1,000 calls/s, enough to
    /// set the p99 (measured in `grpc-pool bench`'s slow-endpoint rows).
    static let decay: Duration = .seconds(10)

    /// The least share of the gap one faster call closes: after 22 calls, a peak is down to a tenth.
    static let sampleWeight = 0.1

    private var milliseconds: Double = 0
    private var updated: ContinuousClock.Instant
    /// Whether a call has been recorded yet.
    private(set) var hasSamples = false

    init(now: ContinuousClock.Instant = .now) {
        self.updated = now
    }

    /// Folds in one call's latency.
    mutating func record(_ latency: Duration, at now: ContinuousClock.Instant = .now) {
        let sample = latency.milliseconds
        self.hasSamples = true
        if sample > self.milliseconds {
            self.milliseconds = sample
        } else {
            let weight = min(Self.weight(of: now - self.updated), 1 - Self.sampleWeight)
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
