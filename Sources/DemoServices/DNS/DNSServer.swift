import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A real DNS server on a loopback port: Debian's `dnsmasq`, answering only from a hosts file
/// that ``setRecords(_:)`` rewrites (dnsmasq reads it again on SIGHUP). Names under `pool.test`
/// that the file does not hold get NXDOMAIN; nothing is forwarded anywhere.
///
/// `make test` and `make bench` install dnsmasq (`dnsmasq-base`) when it is missing.
public final class DNSServer: Sendable {
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    private let process: ChildProcess
    private let directory: URL
    /// The UDP port it answers on, on 127.0.0.1.
    public let port: Int

    private init(process: ChildProcess, directory: URL, port: Int) {
        self.process = process
        self.directory = directory
        self.port = port
    }

    /// A `dns:` target naming `name:port`, looked up at this server.
    public func target(_ name: String, port: Int) -> String { "dns://127.0.0.1:\(self.port)/\(name):\(port)" }

    public static let executable = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Starts a server for `records` (name → IPv4 addresses) and waits until it listens.
    public static func start(_ records: [String: [String]]) async throws -> DNSServer {
        guard let executable = Self.executable else {
            throw StartError(description: "dnsmasq is missing: `make testdeps` installs it (package dnsmasq-base)")
        }
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("grpc-pool-dns-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let hosts = directory.appendingPathComponent("hosts")
        try Self.write(records, to: hosts)
        for _ in 0..<5 {
            let port = try Self.freeUDPPort()
            let process = try ChildProcess(
                executable,
                [
                    "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
                    "--addn-hosts=\(hosts.path)", "--local=/pool.test/", "--local-ttl=0",
                    "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces",
                    "--user=root", "--pid-file=", "--cache-size=0", "--log-facility=-",
                ],
                errors: .capture
            )
            // It logs reading the hosts file once it listens, and exits if the port is taken.
            let watchdog = Task {
                try await Task.sleep(for: .seconds(10))
                process.send(SIGKILL)
            }
            var listening = false
            for await line in process.lines() where line.contains("read \(hosts.path)") {
                listening = true
                break
            }
            watchdog.cancel()
            if listening, !process.hasExited {
                return DNSServer(process: process, directory: directory, port: port)
            }
            // Another process took the port first, or it did not start: another port.
            process.send(SIGKILL)
            await process.exit()
        }
        try? FileManager.default.removeItem(at: directory)
        throw StartError(description: "dnsmasq did not start listening on a loopback port")
    }

    /// Serves `records` from now on.
    public func setRecords(_ records: [String: [String]]) throws {
        try Self.write(records, to: self.directory.appendingPathComponent("hosts"))
        self.process.send(SIGHUP)
    }

    /// Stops answering without going away: queries wait unanswered (the process is stopped).
    public func pause() { self.process.send(SIGSTOP) }

    /// Answers again after ``pause()``.
    public func resume() { self.process.send(SIGCONT) }

    /// Kills the server and waits for the process to end.
    public func stop() async {
        self.process.send(SIGKILL)
        self.process.send(SIGCONT)
        await self.process.exit()
        try? FileManager.default.removeItem(at: self.directory)
    }

    deinit {
        self.process.send(SIGKILL)
        self.process.send(SIGCONT)
    }

    private static func write(_ records: [String: [String]], to file: URL) throws {
        let lines = records.sorted { $0.key < $1.key }.flatMap { name, addresses in
            addresses.map { "\($0) \(name)" }
        }
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
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
