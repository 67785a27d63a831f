internal import CGRPCCore
internal import Foundation

/// Typed options for a `grpc_channel`, turned into core channel args (primer §2).
///
/// `nil` leaves the core's default in place.
package struct ChannelOptions: Sendable, Hashable {
    /// The compression algorithms the core knows.
    package enum Compression: String, Sendable, Hashable {
        case none, deflate, gzip

        var core: Int {
            switch self {
            case .none: Int(GRPC_COMPRESS_NONE.rawValue)
            case .deflate: Int(GRPC_COMPRESS_DEFLATE.rawValue)
            case .gzip: Int(GRPC_COMPRESS_GZIP.rawValue)
            }
        }
    }

    /// Reconnect backoff of the core's subchannel.
    package struct ReconnectBackoff: Sendable, Hashable {
        /// `grpc.initial_reconnect_backoff_ms`: the delay before the first reconnection.
        package var initial: Duration
        /// `grpc.max_reconnect_backoff_ms`: the cap on the delay.
        package var maximum: Duration
        /// `grpc.min_reconnect_backoff_ms`, which the core uses as the *minimum connect timeout*
        /// (default 20 s): how long one attempt may take to reach the server's SETTINGS frame.
        /// Setting it to a short backoff would fail handshakes on a loaded machine.
        package var minimumConnectTimeout: Duration

        package init(initial: Duration, maximum: Duration, minimumConnectTimeout: Duration) {
            self.initial = initial
            self.maximum = maximum
            self.minimumConnectTimeout = minimumConnectTimeout
        }
    }

    package var keepaliveTime: Duration?
    package var keepaliveTimeout: Duration?
    package var keepalivePermitWithoutCalls: Bool?
    /// `grpc.http2.max_pings_without_data`; 0 lets keepalive ping an idle connection forever (P6).
    package var maxPingsWithoutData: Int?
    package var idleTimeout: Duration?
    package var reconnectBackoff: ReconnectBackoff?
    package var defaultCompression: Compression?
    package var enableRetries: Bool?
    /// A service config in JSON; validated when the channel is created (an invalid one would
    /// otherwise give a channel whose every call fails, primer P9).
    package var serviceConfigJSON: String?
    package var maxSendMessageSize: Int?
    package var maxReceiveMessageSize: Int?
    package var userAgent: String?
    /// Gives the channel its own subchannels, hence its own TCP connection (primer P3).
    package var useLocalSubchannelPool: Bool
    /// Overrides the name checked against the server certificate (TLS only).
    package var sslTargetNameOverride: String?
    /// The `:authority` to send.
    package var defaultAuthority: String?
    /// Any other core channel arg, by key.
    package var extra: [String: Value]

    package enum Value: Sendable, Hashable {
        case int(Int)
        case string(String)
    }

    package init() {
        self.useLocalSubchannelPool = false
        self.extra = [:]
    }

    /// The options as core args, in a stable order.
    func arguments() throws(ChannelError) -> [(key: String, value: Value)] {
        var args: [(key: String, value: Value)] = []
        func ms(_ duration: Duration) -> Value { .int(duration.clampedMilliseconds) }
        if let keepaliveTime { args.append((GRPC_ARG_KEEPALIVE_TIME_MS, ms(keepaliveTime))) }
        if let keepaliveTimeout { args.append((GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ms(keepaliveTimeout))) }
        if let keepalivePermitWithoutCalls {
            args.append((GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, .int(keepalivePermitWithoutCalls ? 1 : 0)))
        }
        if let maxPingsWithoutData { args.append((GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, .int(maxPingsWithoutData))) }
        if let idleTimeout { args.append((GRPC_ARG_CLIENT_IDLE_TIMEOUT_MS, ms(idleTimeout))) }
        if let reconnectBackoff {
            args.append((GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, ms(reconnectBackoff.initial)))
            args.append((GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, ms(reconnectBackoff.minimumConnectTimeout)))
            args.append((GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, ms(reconnectBackoff.maximum)))
        }
        if let defaultCompression {
            args.append((GRPC_COMPRESSION_CHANNEL_DEFAULT_ALGORITHM, .int(defaultCompression.core)))
        }
        if let enableRetries { args.append((GRPC_ARG_ENABLE_RETRIES, .int(enableRetries ? 1 : 0))) }
        if let serviceConfigJSON {
            try Self.validate(serviceConfigJSON: serviceConfigJSON)
            args.append((GRPC_ARG_SERVICE_CONFIG, .string(serviceConfigJSON)))
        }
        if let maxSendMessageSize { args.append((GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, .int(maxSendMessageSize))) }
        if let maxReceiveMessageSize {
            args.append((GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .int(maxReceiveMessageSize)))
        }
        if let userAgent { args.append((GRPC_ARG_PRIMARY_USER_AGENT_STRING, .string(userAgent))) }
        if useLocalSubchannelPool { args.append((GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .int(1))) }
        if let sslTargetNameOverride {
            args.append((GRPC_SSL_TARGET_NAME_OVERRIDE_ARG, .string(sslTargetNameOverride)))
        }
        if let defaultAuthority { args.append((GRPC_ARG_DEFAULT_AUTHORITY, .string(defaultAuthority))) }
        for key in extra.keys.sorted() { args.append((key, extra[key]!)) }
        return args
    }

    /// Rejects JSON that is not an object: the core would log it and hand back a lame channel.
    static func validate(serviceConfigJSON json: String) throws(ChannelError) {
        let parsed: Any
        do {
            parsed = try JSONSerialization.jsonObject(with: Data(json.utf8))
        } catch {
            throw ChannelError(.invalidServiceConfig, "service config is not valid JSON: \(error.localizedDescription)")
        }
        guard parsed is [String: Any] else {
            throw ChannelError(.invalidServiceConfig, "service config must be a JSON object, got: \(json)")
        }
    }

    /// Calls `body` with a `grpc_channel_args` that is valid only during the call.
    func withCoreArguments<R>(_ body: (UnsafePointer<grpc_channel_args>) throws -> R) throws -> R {
        let args = try self.arguments()
        var keys: [UnsafeMutablePointer<CChar>] = []
        var values: [UnsafeMutablePointer<CChar>] = []
        defer {
            for key in keys { free(key) }
            for value in values { free(value) }
        }
        var coreArgs = [grpc_arg]()
        coreArgs.reserveCapacity(args.count)
        for (key, value) in args {
            var arg = grpc_arg()
            let cKey = strdup(key)!
            keys.append(cKey)
            arg.key = cKey
            switch value {
            case .int(let int):
                arg.type = GRPC_ARG_INTEGER
                arg.value.integer = Int32(clamping: int)
            case .string(let string):
                arg.type = GRPC_ARG_STRING
                let cValue = strdup(string)!
                values.append(cValue)
                arg.value.string = cValue
            }
            coreArgs.append(arg)
        }
        return try coreArgs.withUnsafeMutableBufferPointer { buffer in
            var channelArgs = grpc_channel_args(num_args: buffer.count, args: buffer.baseAddress)
            return try body(&channelArgs)
        }
    }
}

extension Duration {
    /// Whole milliseconds, clamped to what a core `int` arg holds.
    var clampedMilliseconds: Int {
        let (seconds, attoseconds) = self.components
        let ms = Double(seconds) * 1000 + Double(attoseconds) / 1e15
        return Int(min(max(ms.rounded(), 0), Double(Int32.max)))
    }
}
