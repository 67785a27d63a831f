/// Dynamic sizing's decisions (``PoolManager/Scaling``), one reading of the demand at a time.
///
/// Above the target band it grows at once to the connections that bring the demand per
/// connection back into the band (at least one more, at most `maximum`), then waits
/// `scaleUpCooldown` before growing again; below the band for `scaleDownReadings` readings in a
/// row it shrinks by one, down to `minimum`. A value: time is passed in, the pool does the I/O.
struct Scaler: Sendable {
    enum Decision: Equatable, Sendable {
        /// Keep the working set as it is.
        case stay
        /// Activate connections until `to` are active.
        case grow(to: Int)
        /// Take one connection out of the working set, leaving `to`.
        case shrink(to: Int)
    }

    let minimum: Int
    let maximum: Int
    let scaling: PoolManager.Scaling
    private var lowReadings = 0
    private var lastGrowth: ContinuousClock.Instant?

    init(minimum: Int, maximum: Int, scaling: PoolManager.Scaling) {
        self.minimum = minimum
        self.maximum = maximum
        self.scaling = scaling
    }

    /// The decision for one reading: `demand` (calls in flight and waiting) over `active`
    /// connections, at `now`.
    mutating func reading(demand: Int, active: Int, at now: ContinuousClock.Instant) -> Decision {
        let band = self.scaling.targetInFlight
        let perConnection = Double(demand) / Double(max(active, 1))
        if perConnection > Double(band.upperBound) {
            self.lowReadings = 0
            if let lastGrowth = self.lastGrowth, now - lastGrowth < self.scaling.scaleUpCooldown { return .stay }
            let wanted = Int((Double(demand) / Double(max(band.upperBound, 1))).rounded(.up))
            let target = min(max(wanted, active + 1), self.maximum)
            guard target > active else { return .stay }
            self.lastGrowth = now
            return .grow(to: target)
        }
        guard perConnection < Double(band.lowerBound), active > self.minimum else {
            self.lowReadings = 0
            return .stay
        }
        self.lowReadings += 1
        guard self.lowReadings >= self.scaling.scaleDownReadings else { return .stay }
        self.lowReadings = 0
        return .shrink(to: active - 1)
    }
}
