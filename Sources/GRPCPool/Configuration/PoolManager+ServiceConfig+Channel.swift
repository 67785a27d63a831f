internal import Foundation
internal import GRPCPoolCoreBridge

/// What the core's channels are made with.
extension PoolManager.ServiceConfig {
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

    /// The algorithm a call asks for when it names none itself.
    var callCompression: ChannelOptions.Compression? { self.compression ? .gzip : nil }

    /// The channel options of every connection.
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
        // No default algorithm: each call asks for gzip itself (``callCompression``), so that a
        // unary call below `compressionThreshold` names no `grpc-encoding` at all, and a server
        // that refuses gzip is asked for it no more.
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
