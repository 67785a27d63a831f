extension PoolManager {
    /// How a pool with ``ServiceConfig/maxConnections`` sizes itself.
    ///
    /// Every ``interval``, the pool compares its demand (calls in flight and waiting) per active
    /// connection with ``targetInFlight``. Above the band, it adds at once the connections that
    /// would bring it back into the band (up to `maxConnections`), then waits ``scaleUpCooldown``
    /// before adding more. Below the band for ``scaleDownReadings`` readings in a row, it removes
    /// one connection (down to `poolSize`), which drains: it takes no new calls, and closes once
    /// the calls on it have finished.
    public struct Scaling: Sendable, Hashable {
        /// The band of calls per connection the pool aims for. Default 10…50.
        public var targetInFlight: ClosedRange<Int>
        /// How often demand is read. Default 1 s.
        public var interval: Duration
        /// The least time between two growths. Default 5 s.
        public var scaleUpCooldown: Duration
        /// Readings below the band in a row before one connection is removed. Default 5.
        public var scaleDownReadings: Int

        public init(
            targetInFlight: ClosedRange<Int> = 10...50,
            interval: Duration = .seconds(1),
            scaleUpCooldown: Duration = .seconds(5),
            scaleDownReadings: Int = 5
        ) {
            self.targetInFlight = targetInFlight
            self.interval = interval
            self.scaleUpCooldown = scaleUpCooldown
            self.scaleDownReadings = scaleDownReadings
        }

        public static var defaults: Scaling { Scaling() }
    }

    /// When a connection counts as an outlier, and what happens to it.
    ///
    /// A connection whose last ``consecutiveFailures`` calls failed with UNAVAILABLE or
    /// DEADLINE_EXCEEDED, while another connection of the pool succeeds, is ejected: out of
    /// rotation for ``ejectionTime``, during which its channel is replaced by a new one (the old
    /// one's calls run to their end). Then it is checked and, if healthy, restored. Ejection never
    /// takes out more than ``maxEjectedShare`` of the pool (at least one connection, never the
    /// last one in rotation).
    public struct OutlierDetection: Sendable, Hashable {
        /// Failed calls in a row that eject a connection. Default 5.
        public var consecutiveFailures: Int
        /// How long an ejected connection stays out of rotation. Default 10 s.
        public var ejectionTime: Duration
        /// The largest share of the pool ejected at once, in (0, 1]. Default 0.5.
        public var maxEjectedShare: Double

        public init(consecutiveFailures: Int = 5, ejectionTime: Duration = .seconds(10), maxEjectedShare: Double = 0.5)
        {
            self.consecutiveFailures = consecutiveFailures
            self.ejectionTime = ejectionTime
            self.maxEjectedShare = maxEjectedShare
        }

        public static var defaults: OutlierDetection { OutlierDetection() }
    }

    /// Background health checking of each connection.
    public struct HealthCheck: Sendable, Hashable {
        /// The name to ask `grpc.health.v1.Health/Check` about (`""` is the whole server);
        /// `nil` checks connectivity only. Default `nil`.
        public var serviceName: String?
        /// How often each connection is checked. Default 30 s.
        public var interval: Duration
        /// How long one check may take before the connection counts as unresponsive. Default 5 s.
        public var timeout: Duration

        public init(serviceName: String? = nil, interval: Duration = .seconds(30), timeout: Duration = .seconds(5)) {
            self.serviceName = serviceName
            self.interval = interval
            self.timeout = timeout
        }

        public static var defaults: HealthCheck { HealthCheck() }
    }

    /// The retry policy for calls (the service config's `retryPolicy` fields), applied to every
    /// method of the service by the clients the pool hands out.
    public struct CallRetryPolicy: Sendable, Hashable {
        /// Attempts including the first; 2–5. Default 3.
        public var maxAttempts: Int
        /// Default 100 ms.
        public var initialBackoff: Duration
        /// Default 1 s.
        public var maxBackoff: Duration
        /// Default 2.
        public var backoffMultiplier: Double
        /// Status codes that are retried. Default UNAVAILABLE.
        public var retryableStatusCodes: [String]

        public init(
            maxAttempts: Int = 3,
            initialBackoff: Duration = .milliseconds(100),
            maxBackoff: Duration = .seconds(1),
            backoffMultiplier: Double = 2,
            retryableStatusCodes: [String] = ["UNAVAILABLE"]
        ) {
            self.maxAttempts = maxAttempts
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.backoffMultiplier = backoffMultiplier
            self.retryableStatusCodes = retryableStatusCodes
        }

        public static var defaults: CallRetryPolicy { CallRetryPolicy() }
    }
}
