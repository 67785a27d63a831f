internal import Foundation
internal import GRPCCore
internal import GRPCPoolCoreBridge

extension PoolManager.ServiceConfig {
    /// The largest pool this library accepts; more connections than this to one service is a
    /// configuration mistake, not a tuning choice.
    public static let maxPoolSize = 1024

    /// Checks every field.
    ///
    /// - Throws: ``ConfigurationError`` for the first field that cannot work.
    public func validate() throws(ConfigurationError) {
        _ = try self.validated()
    }

    /// Checks every field, and returns the credentials for the core (with PEM files read, once).
    func validated() throws(ConfigurationError) -> ChannelCredentials {
        try self.validateEndpoints()
        try self.validateDiscovery()
        try self.validateSizing()
        try self.validateTimings()
        try self.validateOutlierDetection()
        try self.validateRetryPolicy()
        try self.validateLimits()
        return try self.credentials()
    }

    private func validateEndpoints() throws(ConfigurationError) {
        guard !self.endpoints.isEmpty else {
            throw ConfigurationError(field: "endpoints", value: "[]", reason: "must name at least one endpoint")
        }
        for (index, endpoint) in self.endpoints.enumerated() {
            let name = self.endpoints.count == 1 ? "" : "endpoints[\(index)]."
            if let target = endpoint.target {
                guard !target.trimmingCharacters(in: .whitespaces).isEmpty else {
                    throw ConfigurationError(
                        field: "\(name)target",
                        value: "\"\(target)\"",
                        reason: "must not be empty"
                    )
                }
                guard ServiceTarget(endpoint) != nil else {
                    throw ConfigurationError(
                        field: "\(name)target",
                        value: "\"\(target)\"",
                        reason: Self.targetSyntax(target)
                    )
                }
                continue
            }
            guard !endpoint.host.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ConfigurationError(
                    field: "\(name)host",
                    value: "\"\(endpoint.host)\"",
                    reason: "must not be empty"
                )
            }
            guard !endpoint.host.contains(where: { $0.isWhitespace || $0 == "/" }) else {
                throw ConfigurationError(
                    field: "\(name)host",
                    value: "\"\(endpoint.host)\"",
                    reason: "must be a host name or IP address"
                )
            }
            guard (1...65535).contains(endpoint.port) else {
                throw ConfigurationError(
                    field: "\(name)port",
                    value: "\(endpoint.port)",
                    reason: "must be between 1 and 65535"
                )
            }
        }
    }

    private func validateDiscovery() throws(ConfigurationError) {
        let discovery = self.discovery
        try Self.positive(discovery.resolutionInterval, "discovery.resolutionInterval")
        try Self.positive(discovery.minResolutionInterval, "discovery.minResolutionInterval")
        try Self.positive(discovery.resolutionTimeout, "discovery.resolutionTimeout")
        guard discovery.minResolutionInterval <= discovery.resolutionInterval else {
            throw ConfigurationError(
                field: "discovery.minResolutionInterval",
                value: "\(discovery.minResolutionInterval)",
                reason: "must not be longer than discovery.resolutionInterval (\(discovery.resolutionInterval))"
            )
        }
        try self.validateRegistry()
        if let id = discovery.clientID, id.isEmpty || id.contains(where: \.isNewline) {
            throw ConfigurationError(
                field: "discovery.clientID",
                value: "\"\(id)\"",
                reason: "must be one line of text, not empty"
            )
        }
    }

    private func validateSizing() throws(ConfigurationError) {
        guard (1...Self.maxPoolSize).contains(self.poolSize) else {
            throw ConfigurationError(
                field: "poolSize",
                value: "\(self.poolSize)",
                reason: "must be between 1 and \(Self.maxPoolSize)"
            )
        }
        if let maximum = self.maxConnections {
            guard (self.poolSize...Self.maxPoolSize).contains(maximum) else {
                throw ConfigurationError(
                    field: "maxConnections",
                    value: "\(maximum)",
                    reason: "must be between poolSize (\(self.poolSize)) and \(Self.maxPoolSize)"
                )
            }
            guard self.scaling.targetInFlight.lowerBound >= 0 else {
                throw ConfigurationError(
                    field: "scaling.targetInFlight",
                    value: "\(self.scaling.targetInFlight)",
                    reason: "must not be negative"
                )
            }
            try Self.positive(self.scaling.interval, "scaling.interval")
            guard self.scaling.scaleDownReadings >= 1 else {
                throw ConfigurationError(
                    field: "scaling.scaleDownReadings",
                    value: "\(self.scaling.scaleDownReadings)",
                    reason: "must be at least 1"
                )
            }
        }
        guard self.streamCapacity >= 2 else {
            throw ConfigurationError(
                field: "streamCapacity",
                value: "\(self.streamCapacity)",
                reason: "must be at least 2 (one stream is kept for the pool's own health and keepalive RPC)"
            )
        }
        guard self.maxQueuedCalls >= 0 else {
            throw ConfigurationError(
                field: "maxQueuedCalls",
                value: "\(self.maxQueuedCalls)",
                reason: "must not be negative"
            )
        }
    }

    private func validateTimings() throws(ConfigurationError) {
        guard self.maxRetries >= 0 else {
            throw ConfigurationError(field: "maxRetries", value: "\(self.maxRetries)", reason: "must not be negative")
        }
        try Self.positive(self.retryDelay, "retryDelay")
        try Self.positive(self.maxRetryDelay, "maxRetryDelay")
        guard self.maxRetryDelay >= self.retryDelay else {
            throw ConfigurationError(
                field: "maxRetryDelay",
                value: "\(self.maxRetryDelay)",
                reason: "must not be shorter than retryDelay (\(self.retryDelay))"
            )
        }
        try Self.positive(self.timeout, "timeout")
        try Self.positive(self.connectionWaitTimeout, "connectionWaitTimeout")
        try Self.positive(self.drainTimeout, "drainTimeout")
        if let timeout = self.defaultCallTimeout {
            try Self.positive(timeout, "defaultCallTimeout")
        }
        try Self.positive(self.keepaliveTime, "keepaliveTime")
        try Self.positive(self.keepaliveTimeout, "keepaliveTimeout")
        guard self.maxConnectionIdle >= .seconds(1) else {
            throw ConfigurationError(
                field: "maxConnectionIdle",
                value: "\(self.maxConnectionIdle)",
                reason: "must be at least 1 second (the core's minimum)"
            )
        }
        if let age = self.maxConnectionAge {
            try Self.positive(age, "maxConnectionAge")
        }
        try Self.positive(self.healthCheck.interval, "healthCheck.interval")
        try Self.positive(self.healthCheck.timeout, "healthCheck.timeout")
    }

    private func validateOutlierDetection() throws(ConfigurationError) {
        if let outlier = self.outlierDetection {
            guard outlier.consecutiveFailures >= 1 else {
                throw ConfigurationError(
                    field: "outlierDetection.consecutiveFailures",
                    value: "\(outlier.consecutiveFailures)",
                    reason: "must be at least 1"
                )
            }
            try Self.positive(outlier.ejectionTime, "outlierDetection.ejectionTime")
            guard outlier.maxEjectedShare > 0, outlier.maxEjectedShare <= 1 else {
                throw ConfigurationError(
                    field: "outlierDetection.maxEjectedShare",
                    value: "\(outlier.maxEjectedShare)",
                    reason: "must be more than 0 and at most 1"
                )
            }
        }
    }

    private func validateRetryPolicy() throws(ConfigurationError) {
        let policy = self.retryPolicy
        guard (2...5).contains(policy.maxAttempts) else {
            throw ConfigurationError(
                field: "retryPolicy.maxAttempts",
                value: "\(policy.maxAttempts)",
                reason: "must be between 2 and 5"
            )
        }
        try Self.positive(policy.initialBackoff, "retryPolicy.initialBackoff")
        try Self.positive(policy.maxBackoff, "retryPolicy.maxBackoff")
        guard policy.backoffMultiplier > 0, policy.backoffMultiplier.isFinite else {
            throw ConfigurationError(
                field: "retryPolicy.backoffMultiplier",
                value: "\(policy.backoffMultiplier)",
                reason: "must be a positive number"
            )
        }
        guard !policy.retryableStatusCodes.isEmpty else {
            throw ConfigurationError(
                field: "retryPolicy.retryableStatusCodes",
                value: "[]",
                reason: "must not be empty"
            )
        }
        for code in policy.retryableStatusCodes where Status.Code(name: code) == nil {
            throw ConfigurationError(
                field: "retryPolicy.retryableStatusCodes",
                value: "\"\(code)\"",
                reason: "must be a status code name such as UNAVAILABLE"
            )
        }
    }

    private func validateLimits() throws(ConfigurationError) {
        if let size = self.maxSendMessageSize, size < 1 {
            throw ConfigurationError(field: "maxSendMessageSize", value: "\(size)", reason: "must be positive")
        }
        guard self.maxReceiveMessageSize >= 1 else {
            throw ConfigurationError(
                field: "maxReceiveMessageSize",
                value: "\(self.maxReceiveMessageSize)",
                reason: "must be positive"
            )
        }
        guard self.compressionThreshold >= 0 else {
            throw ConfigurationError(
                field: "compressionThreshold",
                value: "\(self.compressionThreshold)",
                reason: "must be 0 (compress every message) or a size in bytes"
            )
        }
        guard !self.userAgent.contains(where: { $0.isNewline }) else {
            throw ConfigurationError(field: "userAgent", value: "\"\(self.userAgent)\"", reason: "must be one line")
        }
    }

    static func positive(_ duration: Duration, _ field: String) throws(ConfigurationError) {
        guard duration > .zero else {
            throw ConfigurationError(field: field, value: "\(duration)", reason: "must be positive")
        }
    }
}
