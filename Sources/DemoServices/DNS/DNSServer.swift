import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// A real DNS server on a loopback port: Debian's `dnsmasq`, answering only from a hosts file
/// that ``setRecords(_:)`` rewrites (dnsmasq reads it again on SIGHUP) and from the SRV records
/// it was started with (``setServices(_:)`` starts it again on the same port with others).
/// Names under `pool.test` that it does not hold get NXDOMAIN; nothing is forwarded anywhere.
///
/// `make test` and `make bench` install dnsmasq (`dnsmasq-base`) when it is missing.
public final class DNSServer: Sendable {
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// One SRV record: `name` (`_service._proto.domain`) is served by `target` on `port`.
    public struct ServiceRecord: Sendable, Hashable {
        public var name: String
        public var target: String
        public var port: Int
        public var priority: Int
        public var weight: Int

        public init(name: String, target: String, port: Int, priority: Int = 0, weight: Int = 0) {
            self.name = name
            self.target = target
            self.port = port
            self.priority = priority
            self.weight = weight
        }

        var option: String { "--srv-host=\(self.name),\(self.target),\(self.port),\(self.priority),\(self.weight)" }
    }

    private let process: NIOLockedValueBox<ChildProcess>
    private let directory: URL
    private let ttl: Int
    /// The UDP port it answers on, on 127.0.0.1.
    public let port: Int

    private init(process: ChildProcess, directory: URL, port: Int, ttl: Int) {
        self.process = NIOLockedValueBox(process)
        self.directory = directory
        self.port = port
        self.ttl = ttl
    }

    /// A `dns:` target naming `name:port`, looked up at this server.
    public func target(_ name: String, port: Int) -> String { "dns://127.0.0.1:\(self.port)/\(name):\(port)" }

    /// A `dns+srv:` target naming the SRV records of `name`, looked up at this server.
    public func serviceTarget(_ name: String) -> String { "dns+srv://127.0.0.1:\(self.port)/\(name)" }

    public static let executable = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Starts a server for `records` (name → IPv4 addresses) and `services`, whose answers
    /// carry `ttl` seconds, and waits until it listens.
    public static func start(
        _ records: [String: [String]],
        services: [ServiceRecord] = [],
        ttl: Int = 0
    ) async throws -> DNSServer {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("grpc-pool-dns-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Self.write(records, to: directory.appendingPathComponent("hosts"))
        for _ in 0..<5 {
            let port = try Self.freeUDPPort()
            if let process = try await Self.launch(directory: directory, port: port, services: services, ttl: ttl) {
                return DNSServer(process: process, directory: directory, port: port, ttl: ttl)
            }
        }
        try? FileManager.default.removeItem(at: directory)
        throw StartError(description: "dnsmasq did not start listening on a loopback port")
    }

    /// dnsmasq on `port`, once it listens; `nil` when it did not (another process took the port).
    private static func launch(
        directory: URL,
        port: Int,
        services: [ServiceRecord],
        ttl: Int
    ) async throws -> ChildProcess? {
        guard let executable = Self.executable else {
            throw StartError(description: "dnsmasq is missing: `make testdeps` installs it (package dnsmasq-base)")
        }
        let hosts = directory.appendingPathComponent("hosts")
        let process = try ChildProcess(
            executable,
            [
                "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
                "--addn-hosts=\(hosts.path)", "--local=/pool.test/", "--local-ttl=\(ttl)",
                "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--user=root", "--pid-file=", "--cache-size=0", "--log-facility=-",
            ] + services.map(\.option),
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
        if listening, !process.hasExited { return process }
        process.send(SIGKILL)
        await process.exit()
        return nil
    }

    /// Serves `services` as its SRV records from now on: dnsmasq reads them only when it starts,
    /// so it is started again on the same port (queries meanwhile go unanswered and are retried).
    public func setServices(_ services: [ServiceRecord]) async throws {
        let old = self.process.withLockedValue { $0 }
        old.send(SIGKILL)
        old.send(SIGCONT)
        await old.exit()
        for _ in 0..<50 {
            if let process = try await Self.launch(
                directory: self.directory,
                port: self.port,
                services: services,
                ttl: self.ttl
            ) {
                self.process.withLockedValue { $0 = process }
                return
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw StartError(description: "dnsmasq did not start again on port \(self.port)")
    }

    /// Serves `records` from now on.
    public func setRecords(_ records: [String: [String]]) throws {
        try Self.write(records, to: self.directory.appendingPathComponent("hosts"))
        self.process.withLockedValue { $0 }.send(SIGHUP)
    }

    /// Stops answering without going away: queries wait unanswered (the process is stopped).
    public func pause() { self.process.withLockedValue { $0 }.send(SIGSTOP) }

    /// Answers again after ``pause()``.
    public func resume() { self.process.withLockedValue { $0 }.send(SIGCONT) }

    /// Kills the server and waits for the process to end.
    public func stop() async {
        let process = self.process.withLockedValue { $0 }
        process.send(SIGKILL)
        process.send(SIGCONT)
        await process.exit()
        try? FileManager.default.removeItem(at: self.directory)
    }

    deinit {
        let process = self.process.withLockedValue { $0 }
        process.send(SIGKILL)
        process.send(SIGCONT)
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
