internal import GRPCCore
private import Synchronization

/// The compression algorithms the server behind one channel refused, and those it has shown it
/// accepts.
///
/// A server that does not accept a request's `grpc-encoding` answers UNIMPLEMENTED before any
/// handler sees the call (gRPC's compression spec; grpc-swift-2's servers accept no compression
/// unless configured to). The channel remembers the refusal, and its calls stop asking for that
/// algorithm.
///
/// A refusal is clean only for a call whose request has ended: a grpc-swift server refusing a
/// stream whose request is still open may reset it (RST_STREAM CANCEL), and the core then reports
/// CANCELLED, not the refusal. So a call whose request stays open after its start asks for an
/// algorithm only once the server has accepted it: a call that asked for it got a response
/// message or ended OK.
///
/// The spec has the server list what it accepts in `grpc-accept-encoding`, but the core keeps
/// that header to itself. A refusal is therefore UNIMPLEMENTED for a call that asked for an
/// algorithm, with a message about it — every stack's says so: grpc-swift's "gzip compression is
/// not supported", grpc-go's "Decompressor is not installed for grpc-encoding", grpc-java's
/// "Can't find decompressor for gzip", the C core's "Compression algorithm 'gzip' is disabled" —
/// unlike an unknown method's UNIMPLEMENTED.
package final class CompressionRefusals: Sendable {
    /// One bit per ``ChannelOptions/Compression``, by its core number.
    private let refused = Atomic<Int>(0)
    private let accepted = Atomic<Int>(0)

    package init() {}

    /// Whether the server refused `algorithm`.
    package func contains(_ algorithm: ChannelOptions.Compression) -> Bool {
        self.refused.load(ordering: .relaxed) & (1 << algorithm.core) != 0
    }

    /// Whether the server has accepted `algorithm` (see ``learnAccepted(_:)``).
    package func accepts(_ algorithm: ChannelOptions.Compression) -> Bool {
        self.accepted.load(ordering: .relaxed) & (1 << algorithm.core) != 0
    }

    /// A call that asked for `algorithm` got a response message or ended OK: the server's
    /// handler ran, so the server accepts it.
    package func learnAccepted(_ algorithm: ChannelOptions.Compression?) {
        guard let algorithm, algorithm != .none, !self.accepts(algorithm) else { return }
        self.accepted.bitwiseOr(1 << algorithm.core, ordering: .relaxed)
    }

    /// Whether `status` is the server refusing `algorithm`, which a call asked for; if so, it
    /// is remembered. An OK status is remembered as the algorithm's acceptance.
    package func learn(from status: CallStatus, requested algorithm: ChannelOptions.Compression?) -> Bool {
        if status.code == .ok { self.learnAccepted(algorithm) }
        guard let algorithm, algorithm != .none, status.code == .unimplemented else { return false }
        let message = status.text.lowercased()
        guard ["compress", "encoding", algorithm.rawValue].contains(where: message.contains) else { return false }
        self.refused.bitwiseOr(1 << algorithm.core, ordering: .relaxed)
        return true
    }

    /// A streaming call's refusal as the caller sees it: UNAVAILABLE, which a retry policy
    /// retries, since the call was not processed and the channel's next calls go uncompressed.
    /// (A unary call is sent again at once instead: its one message is still at hand.)
    package static func retryable(_ status: CallStatus, requested algorithm: ChannelOptions.Compression?) -> CallStatus
    {
        var status = status
        status.code = .unavailable
        status.message =
            "the server does not accept \(algorithm?.rawValue ?? "compressed") requests (\(status.text)); the call"
            + " was not processed, and the connection's next calls go uncompressed"
        return status
    }
}
