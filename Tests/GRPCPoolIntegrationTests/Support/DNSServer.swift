import Foundation
import GRPCPoolCoreBridge
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A real DNS server on a loopback port: Debian's `dnsmasq`, answering only from a hosts file
/// that ``setRecords(_:)`` rewrites (dnsmasq reads it again on SIGHUP). Names under `pool.test`
/// that the file does not hold get NXDOMAIN; nothing is forwarded anywhere.
///
/// `make test` installs dnsmasq (`dnsmasq-base`) when it is missing.
final class DNSServer: @unchecked Sendable {
    // Mutated only by start/stop, which a test calls from one task at a time.
    private var process: Process?
    private var end: ProcessEnd?
    private let directory: URL
    private var hostsFile: URL { self.directory.appendingPathComponent("hosts") }
    private(set) var port = 0

    init() {
        self.directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("grpc-pool-dns-\(UUID().uuidString)")
    }

    /// A `dns:` target naming `name:port`, looked up at this server.
    func target(_ name: String, port: Int) -> String { "dns://127.0.0.1:\(self.port)/\(name):\(port)" }

    static let executable = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Starts serving `records` (name → IPv4 addresses) and waits until it listens.
    func start(_ records: [String: [String]]) async throws {
        let executable = try #require(
            Self.executable,
            "dnsmasq is missing: run `make test` (it installs it) or `make testdeps`"
        )
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        try self.write(records)
        for _ in 0..<5 {
            let port = try Self.freeUDPPort()
            let process = Process()
            // A child inherits the blocked signals of the thread that starts it, and this
            // process's threads block SIGHUP: dnsmasq would never see it. A small exec wrapper
            // unblocks every signal first.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = [
                "-c",
                "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); "
                    + "os.execv(sys.argv[1], sys.argv[1:])",
                executable,
                "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
                "--addn-hosts=\(self.hostsFile.path)", "--local=/pool.test/", "--local-ttl=0",
                "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--user=root", "--pid-file=", "--cache-size=0",
            ]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            let end = ProcessEnd(process)
            try process.run()
            let listening = await poll(every: .milliseconds(10), timeLimit: .seconds(10)) {
                end.hasEnded || SocketTable.udpListeners().contains(port)
            }
            if listening, !end.hasEnded {
                self.process = process
                self.end = end
                self.port = port
                return
            }
            if !end.hasEnded { kill(process.processIdentifier, SIGKILL) }
            await end.wait()
        }
        Issue.record("dnsmasq did not start")
        throw CancellationError()
    }

    /// Serves `records` from now on.
    func setRecords(_ records: [String: [String]]) throws {
        try self.write(records)
        if let process = self.process { kill(process.processIdentifier, SIGHUP) }
    }

    /// Stops answering without going away: queries wait unanswered (the process is stopped).
    func pause() {
        if let process = self.process { kill(process.processIdentifier, SIGSTOP) }
    }

    /// Answers again after ``pause()``.
    func resume() {
        if let process = self.process { kill(process.processIdentifier, SIGCONT) }
    }

    /// Kills the server; ``halt()`` also waits for the process to end.
    func stop() {
        guard let process = self.process, let end = self.end else { return }
        if !end.hasEnded {
            kill(process.processIdentifier, SIGKILL)
            kill(process.processIdentifier, SIGCONT)
        }
        self.process = nil
        try? FileManager.default.removeItem(at: self.directory)
    }

    /// Kills the server and waits for the process to end.
    func halt() async {
        self.stop()
        await self.end?.wait()
    }

    deinit {
        self.stop()
    }

    private func write(_ records: [String: [String]]) throws {
        let lines = records.sorted { $0.key < $1.key }.flatMap { name, addresses in
            addresses.map { "\($0) \(name)" }
        }
        try (lines.joined(separator: "\n") + "\n").write(to: self.hostsFile, atomically: true, encoding: .utf8)
    }

    /// A UDP port on 127.0.0.1 that was free a moment ago.
    private static func freeUDPPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Runs `body` with a started ``DNSServer`` serving `records`, stopped afterwards whatever happens.
func withDNSServer<Result>(
    _ records: [String: [String]],
    _ body: (DNSServer) async throws -> Result
) async throws -> Result {
    let server = DNSServer()
    try await server.start(records)
    do {
        let result = try await body(server)
        await server.halt()
        return result
    } catch {
        await server.halt()
        throw error
    }
}

/// The machine's TCP and UDP sockets as the kernel lists them (`/proc/net/{tcp,tcp6,udp}`): what
/// the tests count connections from, rather than from the pool's own view.
enum SocketTable {
    /// Established TCP connections to `host:port`, from whichever side opened them (IPv4 or
    /// IPv4-mapped IPv6 sockets).
    static func established(to host: String, port: Int) -> Int {
        let rows = self.rows("/proc/net/tcp") + self.rows("/proc/net/tcp6")
        return rows.filter { $0.state == 0x01 && $0.remote.host == host && $0.remote.port == port }.count
    }

    /// Established TCP connections to each of `hosts` on `port`, in order.
    static func established(to hosts: [String], port: Int) -> [Int] {
        let rows = self.rows("/proc/net/tcp") + self.rows("/proc/net/tcp6")
        return hosts.map { host in
            rows.filter { $0.state == 0x01 && $0.remote.host == host && $0.remote.port == port }.count
        }
    }

    /// The UDP ports bound on 127.0.0.1.
    static func udpListeners() -> Set<Int> {
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
