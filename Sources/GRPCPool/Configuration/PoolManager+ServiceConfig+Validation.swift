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
        guard self.streamCapacity >= 1 else {
            throw ConfigurationError(
                field: "streamCapacity",
                value: "\(self.streamCapacity)",
                reason: "must be at least 1"
            )
        }
        guard self.maxQueuedCalls >= 0 else {
            throw ConfigurationError(
                field: "maxQueuedCalls",
                value: "\(self.maxQueuedCalls)",
                reason: "must not be negative"
            )
        }
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
        try Self.positive(self.healthCheck.interval, "healthCheck.interval")
        try Self.positive(self.healthCheck.timeout, "healthCheck.timeout")
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
        guard !self.userAgent.contains(where: { $0.isNewline }) else {
            throw ConfigurationError(field: "userAgent", value: "\"\(self.userAgent)\"", reason: "must be one line")
        }
        _ = try self.credentials()
    }

    private static func positive(_ duration: Duration, _ field: String) throws(ConfigurationError) {
        guard duration > .zero else {
            throw ConfigurationError(field: field, value: "\(duration)", reason: "must be positive")
        }
    }

    /// The credentials for the core, with PEM files read.
    func credentials() throws(ConfigurationError) -> ChannelCredentials {
        switch self.transportSecurity.mode {
        case .plaintext:
            return .insecure
        case .tls(let tls):
            let roots = try Self.read(tls.trustRoots, field: "transportSecurity.trustRoots")
            let chain = try Self.read(tls.certificateChain, field: "transportSecurity.certificateChain")
            let key = try Self.read(tls.privateKey, field: "transportSecurity.privateKey")
            guard (chain == nil) == (key == nil) else {
                throw ConfigurationError(
                    field: chain == nil ? "transportSecurity.certificateChain" : "transportSecurity.privateKey",
                    value: "nil",
                    reason: "mutual TLS needs both a certificate chain and a private key"
                )
            }
            return .tls(rootCertificates: roots, certificateChain: chain, privateKey: key)
        }
    }

    private static func read(
        _ source: PoolManager.CertificateSource?,
        field: String
    ) throws(ConfigurationError) -> String? {
        switch source {
        case nil:
            return nil
        case .pem(let pem):
            guard pem.contains("-----BEGIN") else {
                throw ConfigurationError(field: field, value: "\"\(pem.prefix(40))…\"", reason: "is not PEM text")
            }
            return pem
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw ConfigurationError(field: field, value: "\"\(path)\"", reason: "file cannot be read")
            }
            let pem = String(decoding: data, as: UTF8.self)
            guard pem.contains("-----BEGIN") else {
                throw ConfigurationError(field: field, value: "\"\(path)\"", reason: "file is not PEM")
            }
            return pem
        }
    }

    /// The channel options for connection `index`.
    func channelOptions() -> ChannelOptions {
        var options = ChannelOptions()
        options.useLocalSubchannelPool = true
        options.keepaliveTime = self.keepaliveTime
        options.keepaliveTimeout = self.keepaliveTimeout
        options.keepalivePermitWithoutCalls = true
        options.maxPingsWithoutData = 0
        options.idleTimeout = self.maxConnectionIdle
        options.reconnectBackoff = .init(
            initial: self.retryDelay,
            maximum: self.maxRetryDelay,
            minimumConnectTimeout: self.timeout
        )
        options.defaultCompression = self.compression ? .gzip : ChannelOptions.Compression.none
        // Retries are grpc-swift's (each attempt picks a connection again), never the core's: a
        // core retry stays on the failing connection, and the core in libgrpc 1.51 corrupts a
        // retried message when compression is on (grpc/grpc#37742: the server received the gzip
        // bytes as the message).
        options.enableRetries = false
        options.maxSendMessageSize = self.maxSendMessageSize
        options.maxReceiveMessageSize = self.maxReceiveMessageSize
        options.userAgent = self.userAgent
        if case .tls(let tls) = self.transportSecurity.mode {
            options.sslTargetNameOverride = tls.serverHostnameOverride
        }
        return options
    }

}
