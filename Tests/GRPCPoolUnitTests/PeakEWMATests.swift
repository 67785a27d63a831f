import Testing

@testable import GRPCPool

/// Least-busy balancing's latency estimate, on explicit instants (no clock is read).
@Suite("Peak EWMA")
struct PeakEWMATests {
    let start = ContinuousClock.now

    @Test("A slower call sets the estimate at once")
    func jumpsToPeak() {
        var ewma = PeakEWMA(now: self.start)
        ewma.record(.milliseconds(1), at: self.start)
        ewma.record(.milliseconds(100), at: self.start + .milliseconds(1))
        #expect(ewma.estimate(at: self.start + .milliseconds(1)) == .milliseconds(100))
    }

    @Test("A peak on a busy connection fades within a few dozen faster calls, not after seconds")
    func peakFadesPerCall() {
        var ewma = PeakEWMA(now: self.start)
        var now = self.start
        ewma.record(.milliseconds(30), at: now)
        for _ in 0..<40 {
            now += .milliseconds(1)
            ewma.record(.milliseconds(1), at: now)
        }
        // 40 ms later: by time alone (10 s) the estimate would still be about 30 ms.
        let estimate = ewma.estimate(at: now)
        #expect(estimate < .milliseconds(2), "\(estimate)")
        #expect(estimate > .milliseconds(1))
    }

    @Test("Without calls the estimate decays by time alone, with a time constant of ten seconds")
    func idleDecay() {
        var ewma = PeakEWMA(now: self.start)
        ewma.record(.milliseconds(100), at: self.start)
        let afterOneSecond = ewma.estimate(at: self.start + .seconds(1)).milliseconds
        let afterDecay = ewma.estimate(at: self.start + PeakEWMA.decay).milliseconds
        #expect(abs(afterOneSecond - 90.48) < 0.01, "\(afterOneSecond)")
        #expect(abs(afterDecay - 36.79) < 0.01, "\(afterDecay)")
    }

    @Test("After a long gap a faster call weighs more than a tenth")
    func timeDecayDominatesWhenIdle() {
        var ewma = PeakEWMA(now: self.start)
        ewma.record(.milliseconds(100), at: self.start)
        ewma.record(.milliseconds(10), at: self.start + .seconds(20))
        // e^-2 of the old value is left: 100 × 0.135 + 10 × 0.865 ≈ 22.2 ms.
        let estimate = ewma.estimate(at: self.start + .seconds(20)).milliseconds
        #expect(abs(estimate - 22.18) < 0.05, "\(estimate)")
    }
}

/// Least-busy's choice between its two candidates.
@Suite("Least-busy comparison")
struct LeastBusyComparisonTests {
    @Test("Busy is (load + 1) × latency: a slow idle connection loses to a fast one with calls in flight")
    func latencyTimesLoad() {
        #expect(Picker.lessBusy((latency: 1, load: 3), than: (latency: 100, load: 0)))
        #expect(!Picker.lessBusy((latency: 100, load: 0), than: (latency: 1, load: 3)))
        #expect(Picker.lessBusy((latency: 10, load: 0), than: (latency: 10, load: 1)))
    }

    @Test("A connection whose first call has not ended counts as fast as the other, so load decides")
    func unknownLatency() {
        // A new connection with 5 calls in flight (its first not back yet) against one at 1 ms
        // with 1: before, its unknown latency passed for none and it drew the call.
        #expect(!Picker.lessBusy((latency: nil, load: 5), than: (latency: 1, load: 1)))
        #expect(Picker.lessBusy((latency: nil, load: 0), than: (latency: 1, load: 1)))
        // Neither known: load decides.
        #expect(Picker.lessBusy((latency: nil, load: 0), than: (latency: nil, load: 2)))
        #expect(!Picker.lessBusy((latency: nil, load: 2), than: (latency: nil, load: 0)))
    }

    @Test("The estimate records whether any call was seen")
    func hasSamples() {
        var ewma = PeakEWMA()
        #expect(!ewma.hasSamples)
        ewma.record(.milliseconds(3))
        #expect(ewma.hasSamples)
    }
}
