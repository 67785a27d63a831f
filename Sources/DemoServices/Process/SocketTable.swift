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
        self.established(to: [host], port: port)[0]
    }

    /// Established TCP connections to each of `hosts` on `port`, in order.
    ///
    /// Only the lines whose remote end is `port` in state 01 (ESTABLISHED) are parsed, found
    /// with `strstr`: the tests poll this every few milliseconds while the machine holds
    /// thousands of sockets, and parsing every line of the table kept Swift's cooperative
    /// threads busy.
    public static func established(to hosts: [String], port: Int) -> [Int] {
        // The remote address's port, then the state: `…:1F90 01 `. A local port is followed
        // by a remote address (8 or 32 hex digits), never by `01 `.
        let needle = Array(String(format: ":%04X 01 ", port).utf8)
        let rows = self.rows("/proc/net/tcp", containing: needle) + self.rows("/proc/net/tcp6", containing: needle)
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

    /// The table's rows, or with `needle` only those whose line contains it.
    private static func rows(_ path: String, containing needle: [UInt8]? = nil) -> [Row] {
        guard let bytes = Self.read(path) else { return [] }
        let lines: [Substring]
        if let needle {
            lines = Self.lines(of: bytes, containing: needle)
        } else {
            lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n").dropFirst().map { $0 }
        }
        return lines.compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count > 3, let local = self.endpoint(fields[1]), let remote = self.endpoint(fields[2]),
                let state = Int(fields[3], radix: 16)
            else { return nil }
            return Row(local: local, remote: remote, state: state)
        }
    }

    /// The lines of `bytes` that contain `needle` (found with `strstr`; neither holds a NUL).
    private static func lines(of bytes: [UInt8], containing needle: [UInt8]) -> [Substring] {
        var text = bytes
        text.append(0)
        let pattern = needle.map { CChar(bitPattern: $0) } + [0]
        return text.withUnsafeBytes { raw -> [Substring] in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: CChar.self) else { return [] }
            let count = raw.count - 1
            var found: [Substring] = []
            var offset = 0
            while offset < count, let hit = strstr(base + offset, pattern) {
                let at = base.distance(to: hit)
                var start = at
                while start > 0, raw[start - 1] != 0x0A { start -= 1 }
                var end = at
                while end < count, raw[end] != 0x0A { end += 1 }
                found.append(Substring(String(decoding: raw[start..<end], as: UTF8.self)))
                offset = end + 1
            }
            return found
        }
    }

    /// The whole of a `/proc` file: it reports a size of 0, and is read until `read` returns 0
    /// (Foundation's file reading stops after the first page of it).
    private static func read(_ path: String) -> [UInt8]? {
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
        return data
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
