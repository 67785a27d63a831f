import Foundation
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// A real etcd cluster on loopback: Debian's `etcd-server`, one process per member, each with its
/// own client and peer ports and data directory (removed by ``stop()``). Members can be killed
/// and started again, as a test of the registry's faults needs; backends register with Debian's
/// `etcdctl` (``put(_:_:lease:)``, ``Registrar``), as a real server's registrar would.
///
/// `make test` installs etcd (`etcd-server`, `etcd-client`) when it is missing.
public final class EtcdCluster: Sendable {
    public struct StartError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The files of TLS between clients and members (PEM): the members present `certificate`
    /// and ask clients for one signed by `ca` (mutual TLS); etcdctl presents `clientCertificate`.
    public struct TLSFiles: Sendable {
        public var ca: String
        public var certificate: String
        public var key: String
        public var clientCertificate: String
        public var clientKey: String

        public init(ca: String, certificate: String, key: String, clientCertificate: String, clientKey: String) {
            self.ca = ca
            self.certificate = certificate
            self.key = key
            self.clientCertificate = clientCertificate
            self.clientKey = clientKey
        }
    }

    /// One member: its name and ports.
    public struct Member: Sendable {
        public let name: String
        public let clientPort: Int
        public let peerPort: Int

        /// `127.0.0.1:<client port>`.
        public var endpoint: String { "127.0.0.1:\(self.clientPort)" }
    }

    public let members: [Member]
    public let tls: TLSFiles?
    private let directory: URL
    private let processes: NIOLockedValueBox<[ChildProcess?]>
    /// `user:password` for etcdctl once authentication is on.
    private let user = NIOLockedValueBox<String?>(nil)

    public static let etcd = ["/usr/bin/etcd", "/usr/local/bin/etcd"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    public static let etcdctl = ["/usr/bin/etcdctl", "/usr/local/bin/etcdctl"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    private init(members: [Member], directory: URL, tls: TLSFiles?) {
        self.members = members
        self.tls = tls
        self.directory = directory
        self.processes = NIOLockedValueBox(Array(repeating: nil, count: members.count))
    }

    /// The members' client endpoints, comma-separated, as `etcdctl --endpoints` takes them.
    public var endpoints: String { self.members.map(\.endpoint).joined(separator: ",") }

    /// Starts a cluster of `size` members, serving clients over mutual TLS when `tls` is given,
    /// and waits until every one is healthy.
    public static func start(size: Int = 3, tls: TLSFiles? = nil) async throws -> EtcdCluster {
        guard Self.etcd != nil, Self.etcdctl != nil else {
            throw StartError(description: "etcd is missing: `make testdeps` installs it (etcd-server, etcd-client)")
        }
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("grpc-pool-etcd-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let ports = try Self.freeTCPPorts(2 * size)
        let members = (0..<size).map { Member(name: "m\($0)", clientPort: ports[2 * $0], peerPort: ports[2 * $0 + 1]) }
        let cluster = EtcdCluster(members: members, directory: directory, tls: tls)
        for index in members.indices { try cluster.launch(index) }
        for index in members.indices {
            guard await cluster.waitUntilHealthy(index) else {
                await cluster.stop()
                throw StartError(description: "etcd member m\(index) did not become healthy")
            }
        }
        return cluster
    }

    private func launch(_ index: Int) throws {
        let member = self.members[index]
        let cluster = self.members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let scheme = self.tls == nil ? "http" : "https"
        let tls = self.tls.map {
            ["--cert-file", $0.certificate, "--key-file", $0.key, "--trusted-ca-file", $0.ca, "--client-cert-auth"]
        }
        let process = try ChildProcess(
            Self.etcd!,
            [
                "--name", member.name,
                "--data-dir", self.directory.appendingPathComponent(member.name).path,
                "--listen-client-urls", "\(scheme)://\(member.endpoint)",
                "--advertise-client-urls", "\(scheme)://\(member.endpoint)",
                "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)",
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
                "--initial-cluster", cluster,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", self.directory.lastPathComponent,
                "--logger", "zap", "--log-level", "error",
            ] + (tls ?? [])
        )
        self.processes.withLockedValue { $0[index] = process }
    }

    /// Waits (at most 30 s) until member `index` answers `etcdctl endpoint health`.
    public func waitUntilHealthy(_ index: Int) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            if (try? await self.etcdctl(["endpoint", "health"], at: [self.members[index]])) != nil { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    /// Kills member `index` (SIGKILL: no goodbye to its peers or clients).
    public func kill(_ index: Int) async {
        guard let process = self.processes.withLockedValue({ $0[index] }) else { return }
        process.send(SIGKILL)
        await process.exit()
        self.processes.withLockedValue { $0[index] = nil }
    }

    /// Starts member `index` again on its data directory, and waits until it is healthy (when the
    /// cluster has a quorum again).
    public func restart(_ index: Int, waitUntilHealthy: Bool = true) async throws {
        try self.launch(index)
        if waitUntilHealthy, !(await self.waitUntilHealthy(index)) {
            throw StartError(description: "etcd member m\(index) did not come back")
        }
    }

    /// The index of the member that is the leader now, as the members report it.
    public func leader() async throws -> Int {
        for (index, member) in self.members.enumerated() {
            guard let status = try? await self.etcdctl(["endpoint", "status", "-w", "json"], at: [member]),
                let data = status.data(using: .utf8),
                let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]],
                let header = (list.first?["Status"] as? [String: Any])?["header"] as? [String: Any],
                let memberID = header["member_id"] as? NSNumber,
                let leaderID = (list.first?["Status"] as? [String: Any])?["leader"] as? NSNumber
            else { continue }
            if memberID == leaderID { return index }
        }
        throw StartError(description: "no member says it is the leader")
    }

    /// `etcdctl put key value`, with the lease when one is given.
    public func put(_ key: String, _ value: String, lease: String? = nil) async throws {
        _ = try await self.etcdctl(["put", key, value] + (lease.map { ["--lease=\($0)"] } ?? []))
    }

    /// `etcdctl del key`.
    public func delete(_ key: String) async throws {
        _ = try await self.etcdctl(["del", key])
    }

    /// Turns etcd's authentication on with `user` (given the root role) and `password`; etcdctl
    /// calls made through this object use them from now on.
    public func enableAuthentication(user: String, password: String) async throws {
        try await self.etcdctl(["user", "add", "\(user):\(password)"])
        if user != "root" {
            try await self.etcdctl(["user", "add", "root:\(password)"])
            try await self.etcdctl(["user", "grant-role", user, "root"])
        }
        try await self.etcdctl(["user", "grant-role", "root", "root"])
        try await self.etcdctl(["auth", "enable"])
        self.user.withLockedValue { $0 = "\(user):\(password)" }
    }

    /// The arguments every etcdctl call carries.
    private func common(_ endpoints: String) -> [String] {
        ["--endpoints=\(endpoints)", "--command-timeout=3s", "--dial-timeout=1s"]
            + (self.user.withLockedValue { $0 }.map { ["--user=\($0)"] } ?? [])
            + (self.tls.map { ["--cacert=\($0.ca)", "--cert=\($0.clientCertificate)", "--key=\($0.clientKey)"] } ?? [])
    }

    /// Runs `etcdctl` with `arguments` against `members` (all by default); its output.
    @discardableResult
    public func etcdctl(_ arguments: [String], at members: [Member]? = nil) async throws -> String {
        let endpoints = (members ?? self.members).map(\.endpoint).joined(separator: ",")
        let process = try ChildProcess(
            Self.etcdctl!,
            self.common(endpoints) + arguments,
            output: .capture,
            errors: .capture
        )
        let output = await process.output(timeLimit: .seconds(10))
        guard await process.exit(timeLimit: .seconds(5)) == .exited(0) else {
            process.send(SIGKILL)
            throw StartError(description: "etcdctl \(arguments.joined(separator: " ")): \(output)")
        }
        return output
    }

    /// Kills every member and removes their data.
    public func stop() async {
        for index in self.members.indices { await self.kill(index) }
        try? FileManager.default.removeItem(at: self.directory)
    }

    deinit {
        for process in self.processes.withLockedValue({ $0 }) { process?.send(SIGKILL) }
    }

    /// `count` TCP ports on 127.0.0.1 that were free a moment ago (all held at once while chosen,
    /// so they differ).
    private static func freeTCPPorts(_ count: Int) throws -> [Int] {
        var sockets: [Int32] = []
        defer { for fd in sockets { close(fd) } }
        var ports: [Int] = []
        for _ in 0..<count {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw POSIXError(.EMFILE) }
            sockets.append(fd)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                    bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
                }
            }
            guard bound else { throw POSIXError(.EADDRINUSE) }
            ports.append(Int(UInt16(bigEndian: address.sin_port)))
        }
        return ports
    }
}

extension EtcdCluster {
    /// A backend's registration kept alive by a lease, as a registering server does: the lease is
    /// granted with `ttl` seconds, the key put on it, and an `etcdctl lease keep-alive` process
    /// keeps it alive until ``kill()`` (the registrar dies: the lease lapses after `ttl`).
    public final class Registrar: Sendable {
        public let key: String
        public let lease: String
        private let keepAlive: ChildProcess

        init(key: String, lease: String, keepAlive: ChildProcess) {
            self.key = key
            self.lease = lease
            self.keepAlive = keepAlive
        }

        /// Stops keeping the lease alive.
        public func kill() async {
            self.keepAlive.send(SIGKILL)
            await self.keepAlive.exit()
        }

        deinit { self.keepAlive.send(SIGKILL) }
    }

    /// Registers `address` under `key` as grpc-go's `endpoints.Manager` does
    /// (`{"Addr":"host:port","Metadata":null}`), on a lease of `ttl` seconds kept alive.
    public func register(_ key: String, address: String, ttl: Int = 5) async throws -> Registrar {
        let granted = try await self.etcdctl(["lease", "grant", "\(ttl)"])
        // "lease 694d7b3e1e2f1a0b granted with TTL(5s)"
        let words = granted.split(separator: " ")
        guard words.count > 1, words[0] == "lease" else { throw StartError(description: "lease grant: \(granted)") }
        let lease = String(words[1])
        try await self.put(key, "{\"Addr\":\"\(address)\",\"Metadata\":null}", lease: lease)
        let keepAlive = try ChildProcess(
            Self.etcdctl!,
            self.common(self.endpoints) + ["lease", "keep-alive", lease]
        )
        return Registrar(key: key, lease: lease, keepAlive: keepAlive)
    }
}
