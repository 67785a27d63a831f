/// A snapshot of one connection's counters.
public struct ConnectionMetrics: Sendable, Hashable {
    /// The connection's index in its pool.
    public var index: Int
    /// The endpoint it belongs to, as configured.
    public var endpoint: String
    /// The address it connects to (one of those the endpoint names).
    public var address: String
    /// Its connectivity state now.
    public var state: ConnectionState
    /// Whether the pool hands it out.
    public var isHealthy: Bool
    /// Calls finished on it (succeeded + failed).
    public var totalRequests: Int
    public var successfulRequests: Int
    public var failedRequests: Int
    /// Calls running on it now.
    public var inFlight: Int
    /// Times it went back to ready after a loss, or was replaced.
    public var reconnects: Int
    /// Whether it is in the pool's working set (always, without dynamic sizing).
    public var isActive: Bool
    /// Whether outlier detection has it out of rotation now.
    public var isEjected: Bool
    /// Times outlier detection ejected it.
    public var ejections: Int
    /// The latest error, as text.
    public var lastError: String?
    /// When it last became ready, if it is connected now.
    public var connectedSince: ContinuousClock.Instant?
    public var averageResponseTime: Duration
    public var p50ResponseTime: Duration
    public var p99ResponseTime: Duration
    /// The id of its channel now in the C core's channelz data (``ChannelzService``), if the
    /// core keeps any.
    public var channelzID: Int? = nil
    /// The pool's own RPCs (health checks, keepalive RPCs) started on its channel now: with
    /// ``totalRequests`` (while the channel has not been replaced), the streams channelz counts
    /// on its socket.
    public var ownRPCs: Int = 0

    /// successes ÷ requests; 1 when there were none.
    public var successRate: Double {
        self.totalRequests == 0 ? 1 : Double(self.successfulRequests) / Double(self.totalRequests)
    }
}

/// A snapshot of one pool.
public struct PoolMetrics: Sendable, Hashable {
    public var serviceID: ServiceID
    public var poolSize: Int
    /// Connections the pool hands out now.
    public var healthyConnections: Int
    public var totalRequests: Int
    public var successfulRequests: Int
    public var failedRequests: Int
    /// Calls and leases the pool refused before any connection saw them: no healthy connection
    /// (fail fast, or none until the deadline), every connection at capacity with the queue full,
    /// or the pool shutting down. They are not in ``totalRequests``, which counts calls on
    /// connections.
    public var rejectedRequests: Int
    /// Calls waiting now for a connection with room (every healthy one is at `streamCapacity`).
    public var queuedCalls: Int
    public var inFlight: Int
    public var reconnects: Int
    /// The mean latency of finished calls.
    public var averageResponseTime: Duration
    public var p50ResponseTime: Duration
    public var p99ResponseTime: Duration
    /// Per connection, by index.
    public var connections: [ConnectionMetrics]
    /// The addresses the pool spreads its connections over now (``PoolManager/Discovery``).
    public var addresses: [String]
    /// Lookups of the endpoints' names that failed or found nothing (the pool kept the last
    /// addresses).
    public var resolutionFailures: Int

    /// successes ÷ requests; 1 when there were none.
    public var successRate: Double {
        self.totalRequests == 0 ? 1 : Double(self.successfulRequests) / Double(self.totalRequests)
    }

    /// The mean latency in milliseconds.
    public var averageResponseTimeMilliseconds: Double { self.averageResponseTime.milliseconds }
}
