internal import CGRPCCore

/// Options for one call on a ``CoreChannel``.
package struct CoreCallOptions: Sendable, Hashable {
    /// The call fails with DEADLINE_EXCEEDED after this long; `nil` waits forever.
    package var timeout: Duration?
    /// Wait for the channel to become ready instead of failing fast on TRANSIENT_FAILURE.
    package var waitForReady: Bool
    /// Compress this call's messages with this algorithm, overriding the channel default.
    package var compression: ChannelOptions.Compression?
    /// The `:authority` for this call.
    package var authority: String?
    /// Messages of fewer bytes go out uncompressed (`GRPC_WRITE_NO_COMPRESS`), whatever algorithm
    /// the channel or the call would compress them with; `0` compresses every message.
    package var compressionThreshold: Int

    package init(
        timeout: Duration? = nil,
        waitForReady: Bool = false,
        compression: ChannelOptions.Compression? = nil,
        authority: String? = nil,
        compressionThreshold: Int = 0
    ) {
        self.timeout = timeout
        self.waitForReady = waitForReady
        self.compression = compression
        self.authority = authority
        self.compressionThreshold = compressionThreshold
    }

    var deadline: gpr_timespec {
        guard let timeout, timeout < .seconds(100 * 365 * 24 * 3600) else {
            return gpr_inf_future(GPR_CLOCK_MONOTONIC)
        }
        return .fromNow(timeout)
    }

    /// Initial-metadata flags.
    var initialMetadataFlags: UInt32 {
        self.waitForReady ? UInt32(GRPC_INITIAL_METADATA_WAIT_FOR_READY) : 0
    }

    /// The write flags of a message of `size` bytes: uncompressed below the threshold, or when
    /// the call asked for no compression.
    func writeFlags(messageSize size: Int) -> UInt32 {
        size < self.compressionThreshold || self.compression == ChannelOptions.Compression.none
            ? UInt32(GRPC_WRITE_NO_COMPRESS) : 0
    }

    /// The algorithm the call asks the core for: ``compression``, unless the server refused it,
    /// or the call is unary and its one message is below the threshold (nothing would be
    /// compressed: the call then names no `grpc-encoding` at all, and costs what an uncompressed
    /// call costs), or its request stays open after the start and the server has not yet shown
    /// that it accepts the algorithm (``CompressionRefusals``: its refusal would not be clean).
    package func requestedCompression(
        unaryRequestSize: Int? = nil,
        requestStaysOpen: Bool = false,
        refusals: CompressionRefusals
    ) -> ChannelOptions.Compression? {
        guard let compression = self.compression, compression != .none else { return self.compression }
        if let size = unaryRequestSize, size < self.compressionThreshold { return nil }
        if requestStaysOpen, !refusals.accepts(compression) { return nil }
        return refusals.contains(compression) ? nil : compression
    }

    /// Metadata the core reads to pick a call's compression (primer §4, per-call compression);
    /// none leaves the channel's default.
    static func internalMetadata(requesting compression: ChannelOptions.Compression?) -> [(String, String)] {
        guard let compression else { return [] }
        let name = compression == .none ? "identity" : compression.rawValue
        return [(GRPC_COMPRESSION_REQUEST_ALGORITHM_MD_KEY, name)]
    }
}

extension gpr_timespec {
    /// The monotonic instant `duration` from now (now itself for a negative duration).
    static func fromNow(_ duration: Duration) -> gpr_timespec {
        let (seconds, attoseconds) = max(.zero, duration).components
        let nanos = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_nanos(nanos, GPR_TIMESPAN))
    }
}
