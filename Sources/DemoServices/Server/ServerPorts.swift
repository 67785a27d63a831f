private import GRPCCore
private import NIOConcurrencyHelpers
private import NIOCore

#if canImport(Glibc)
private import Glibc
#endif

/// Ports for the demo servers that ask for any, taken in turn from below Linux's ephemeral range
/// (32768–60999).
///
/// A server that stops and restarts on its port needs the port to stay free in between. A port
/// the kernel picked (bind to 0) is an ephemeral one, and any client socket connecting elsewhere
/// may take it as its own local port meanwhile; the restart then fails with EADDRINUSE (seen in
/// `make test`, where some 80 tests open connections at once). Below the range no client socket
/// gets one, and taking them in turn keeps one process from handing a stopped server's port to
/// another of its servers. Each process starts at its own place in the range.
enum ServerPorts {
    /// The ports handed out: 20000 up to the ephemeral range.
    static let range = 20000..<32768

    private static let counter = NIOLockedValueBox(Int(getpid()) &* 211)

    /// The next port to try.
    static func next() -> Int {
        let offset = self.counter.withLockedValue { value in
            defer { value &+= 1 }
            return value
        }
        return self.range.lowerBound + (offset % self.range.count + self.range.count) % self.range.count
    }

    /// Whether `error`, or an error it wraps, is EADDRINUSE.
    static func isAddressInUse(_ error: any Error) -> Bool {
        if let error = error as? IOError { return error.errnoCode == EADDRINUSE }
        if let error = error as? RuntimeError, let cause = error.cause { return self.isAddressInUse(cause) }
        return false
    }
}
