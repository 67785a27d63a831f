import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// The machine's TCP and UDP sockets as the kernel lists them (`/proc/net/{tcp,tcp6,udp}`): what
/// the tests and benchmarks count connections from, rather than from the pool's own view.
public enum SocketTable {
    /// Established TCP connections to `host:port`, from whichever side opened them (IPv4 or
    /// IPv4-mapped IPv6 sockets).
    public static func established(to host: String, port: Int) -> Int {
        let rows = self.rows("/proc/net/tcp") + self.rows("/proc/net/tcp6")
        return rows.filter { $0.state == 0x01 && $0.remote.host == host && $0.remote.port == port }.count
    }

    /// Established TCP connections to each of `hosts` on `port`, in order.
    public static func established(to hosts: [String], port: Int) -> [Int] {
        let rows = self.rows("/proc/net/tcp") + self.rows("/proc/net/tcp6")
        return hosts.map { host in
            rows.filter { $0.state == 0x01 && $0.remote.host == host && $0.remote.port == port }.count
        }
    }

    /// The UDP ports bound on 127.0.0.1.
    public static func udpListeners() -> Set<Int> {
        Set(self.rows("/proc/net/udp").filter { $0.local.host == "127.0.0.1" }.map(\.local.port))
    }

    private struct Row {
        var local: (host: String, port: Int)
        var remote: (host: String, port: Int)
        var state: Int
    }

    private static func rows(_ path: String) -> [Row] {
        guard let text = Self.read(path) else { return [] }
        return text.split(separator: "\n").dropFirst().compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 3, let local = self.endpoint(fields[1]), let remote = self.endpoint(fields[2]),
                let state = Int(fields[3], radix: 16)
            else { return nil }
            return Row(local: local, remote: remote, state: state)
        }
    }

    /// The whole of a `/proc` file: it reports a size of 0, and is read until `read` returns 0
    /// (Foundation's file reading stops after the first page of it).
    private static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            data.append(contentsOf: chunk[..<count])
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6; IPv4-mapped addresses read as
    /// IPv4): each 32-bit word is in the machine's (little-endian) order.
    private static func endpoint(_ field: Substring) -> (host: String, port: Int)? {
        let parts = field.split(separator: ":")
        guard parts.count == 2, let port = Int(parts[1], radix: 16) else { return nil }
        let hex = parts[0]
        let word: Substring
        switch hex.count {
        case 8:
            word = hex
        case 32 where hex.hasPrefix("0000000000000000FFFF0000"):
            word = hex.suffix(8)
        case 32:
            return ("ipv6:\(hex)", port)
        default:
            return nil
        }
        guard let value = UInt32(word, radix: 16) else { return nil }
        let bytes = withUnsafeBytes(of: value.littleEndian) { Array($0) }
        return (bytes.map { "\($0)" }.joined(separator: "."), port)
    }
}
