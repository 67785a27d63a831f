internal import Foundation
internal import GRPCPoolCoreBridge

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// Looks up a name's addresses, A and AAAA records, on a thread of its own: both ways of asking
/// (a UDP exchange with a given server, or the system's `getaddrinfo`) wait, and Swift's
/// cooperative pool must never wait on a C call.
enum DNSResolver {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The core targets (`ipv4:…`, `ipv6:[…]:…`) of `host`'s addresses, sorted, on `port`.
    ///
    /// - Throws: ``Failure`` when the lookup fails, times out, or finds no address.
    static func resolve(
        host: String,
        port: Int,
        server: ServiceTarget.DNSServer?,
        timeout: Duration
    ) async throws(Failure) -> [String] {
        if Self.isIPLiteral(host) { return [ServiceTarget.address(ip: host, port: port)] }
        // The thread's answer, or the task's cancellation (the caller's time limit on the pool's
        // clock) first: then the thread finishes on its own, within its sockets' `timeout`, and
        // its answer is dropped.
        let answer = OneShot<Result<[String], Failure>>()
        let thread = Thread {
            let ips: Result<[String], Failure>
            if let server {
                ips = Result { () throws(Failure) in try Self.query(host, at: server, timeout: timeout) }
            } else {
                ips = Result { () throws(Failure) in try Self.systemLookup(host) }
            }
            _ = answer.set(ips)
        }
        thread.name = "grpc-pool-dns"
        thread.start()
        let unanswered = Failure(
            description: "\(host): no answer within \(timeout)\(server.map { " from \($0)" } ?? "")"
        )
        let ips = try await answer.wait(cancelled: .failure(unanswered)).get()
        guard !ips.isEmpty else {
            throw Failure(description: "\(host): no addresses\(server.map { " at \($0)" } ?? "")")
        }
        return Set(ips).map { ServiceTarget.address(ip: $0, port: port) }.sorted()
    }

    static func isIPLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// An A and an AAAA query to `server` over UDP; waits at most `timeout` for each answer.
    private static func query(
        _ host: String,
        at server: ServiceTarget.DNSServer,
        timeout: Duration
    ) throws(Failure)
        -> [String]
    {
        var found: [String] = []
        var failures: [String] = []
        for type in [DNSMessage.RecordType.a, .aaaa] {
            do {
                found += try Self.exchange(host, type: type, at: server, timeout: timeout)
            } catch {
                failures.append(error.description)
            }
        }
        if found.isEmpty, failures.count == 2 { throw Failure(description: "\(host) at \(server): \(failures[0])") }
        return found
    }

    /// One query for `host`'s records of `type`: over UDP, and again over TCP when the answer
    /// did not fit (RFC 7766); both within `timeout`.
    private static func exchange(
        _ host: String,
        type: DNSMessage.RecordType,
        at server: ServiceTarget.DNSServer,
        timeout: Duration
    ) throws(Failure) -> [String] {
        let id = UInt16.random(in: .min ... .max)
        let query: [UInt8]
        do { query = try DNSMessage.query(id: id, name: host, type: type) } catch {
            throw Failure(description: error.description)
        }
        let address = try Self.socketAddress(of: server)
        let deadline = ContinuousClock.now + timeout
        var answer = try Self.udpExchange(query, id: id, with: address, until: deadline, timeout: timeout)
        if DNSMessage.isTruncated(answer, id: id) {
            answer = try Self.tcpExchange(query, with: address, until: deadline, timeout: timeout)
        }
        let addresses: [String]?
        do { addresses = try DNSMessage.addresses(in: answer, id: id, type: type) } catch {
            throw Failure(description: error.description)
        }
        guard let addresses else { throw Failure(description: "the DNS answer over TCP answered another query") }
        return addresses
    }

    private struct SocketAddress {
        var storage = sockaddr_storage()
        var length: socklen_t
        var family: Int32

        func withPointer<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
            withUnsafePointer(to: self.storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, self.length) }
            }
        }
    }

    private static func socketAddress(of server: ServiceTarget.DNSServer) throws(Failure) -> SocketAddress {
        var storage = sockaddr_storage()
        if let v4 = Self.ipv4(server.host) {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(server.port).bigEndian)
            address.sin_addr = v4
            withUnsafeBytes(of: &address) { bytes in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: bytes) }
            }
            return SocketAddress(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in>.size), family: AF_INET)
        }
        if let v6 = Self.ipv6(server.host) {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = in_port_t(UInt16(server.port).bigEndian)
            address.sin6_addr = v6
            withUnsafeBytes(of: &address) { bytes in withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: bytes) }
            }
            return SocketAddress(storage: storage, length: socklen_t(MemoryLayout<sockaddr_in6>.size), family: AF_INET6)
        }
        throw Failure(description: "DNS server \(server) is not an IP address")
    }

    /// Bounds the socket's next blocking calls by what is left until `deadline`.
    private static func bound(
        _ fd: Int32,
        until deadline: ContinuousClock.Instant,
        timeout: Duration
    ) throws(Failure) {
        let left = deadline - .now
        guard left > .zero else { throw Failure(description: "no answer within \(timeout)") }
        var wait = timeval(
            tv_sec: Int(left.components.seconds),
            tv_usec: Int(left.components.attoseconds / 1_000_000_000_000) + 1
        )
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
    }

    private static func udpExchange(
        _ query: [UInt8],
        id: UInt16,
        with address: SocketAddress,
        until deadline: ContinuousClock.Instant,
        timeout: Duration
    ) throws(Failure) -> [UInt8] {
        #if canImport(Glibc)
        let socketType = Int32(SOCK_DGRAM.rawValue)
        #else
        let socketType = SOCK_DGRAM
        #endif
        let fd = socket(address.family, socketType, 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let sent = address.withPointer { sendto(fd, query, query.count, 0, $0, $1) }
        guard sent == query.count else { throw Failure(description: "sendto: \(String(cString: strerror(errno)))") }
        var buffer = [UInt8](repeating: 0, count: Int(DNSMessage.udpPayloadSize))
        while true {
            try Self.bound(fd, until: deadline, timeout: timeout)
            let received = recv(fd, &buffer, buffer.count, 0)
            if received < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { continue }
                throw Failure(description: "recv: \(String(cString: strerror(errno)))")
            }
            let answer = Array(buffer[..<received])
            // Another query's answer (a late one to an earlier attempt) is not ours: wait on.
            if answer.count >= 2, UInt16(answer[0]) << 8 | UInt16(answer[1]) == id { return answer }
        }
    }

    /// The query over TCP: each message after its length in two bytes.
    private static func tcpExchange(
        _ query: [UInt8],
        with address: SocketAddress,
        until deadline: ContinuousClock.Instant,
        timeout: Duration
    ) throws(Failure) -> [UInt8] {
        #if canImport(Glibc)
        let socketType = Int32(SOCK_STREAM.rawValue)
        #else
        let socketType = SOCK_STREAM
        #endif
        let fd = socket(address.family, socketType, 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try Self.bound(fd, until: deadline, timeout: timeout)
        guard address.withPointer({ connect(fd, $0, $1) }) == 0 else {
            throw Failure(description: "DNS over TCP: connect: \(String(cString: strerror(errno)))")
        }
        let message = [UInt8(query.count >> 8), UInt8(query.count & 0xff)] + query
        var written = 0
        while written < message.count {
            try Self.bound(fd, until: deadline, timeout: timeout)
            let count = message[written...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            if count < 0, errno == EINTR || errno == EAGAIN { continue }
            guard count > 0 else {
                throw Failure(description: "DNS over TCP: send: \(String(cString: strerror(errno)))")
            }
            written += count
        }
        func read(_ wanted: Int) throws(Failure) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: wanted)
            var filled = 0
            while filled < wanted {
                try Self.bound(fd, until: deadline, timeout: timeout)
                let count = bytes[filled...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count < 0, errno == EINTR || errno == EAGAIN { continue }
                guard count > 0 else { throw Failure(description: "DNS over TCP: the answer was cut short") }
                filled += count
            }
            return bytes
        }
        let length = try read(2)
        return try read(Int(length[0]) << 8 | Int(length[1]))
    }

    private static func ipv4(_ text: String) -> in_addr? {
        var address = in_addr()
        return inet_pton(AF_INET, text, &address) == 1 ? address : nil
    }

    private static func ipv6(_ text: String) -> in6_addr? {
        var address = in6_addr()
        return inet_pton(AF_INET6, text, &address) == 1 ? address : nil
    }

    /// `getaddrinfo`: whatever the system's resolver returns (`/etc/hosts`, `resolv.conf`).
    private static func systemLookup(_ host: String) throws(Failure) -> [String] {
        var hints = addrinfo()
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0 else { throw Failure(description: "\(host): \(String(cString: gai_strerror(status)))") }
        defer { freeaddrinfo(list) }
        var found: [String] = []
        var next = list
        while let entry = next?.pointee {
            defer { next = entry.ai_next }
            guard let address = entry.ai_addr else { continue }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            switch entry.ai_family {
            case AF_INET:
                var ip = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
                inet_ntop(AF_INET, &ip, &text, socklen_t(text.count))
            case AF_INET6:
                var ip = address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                inet_ntop(AF_INET6, &ip, &text, socklen_t(text.count))
            default:
                continue
            }
            let length = text.firstIndex(of: 0) ?? text.count
            found.append(String(decoding: text[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return found
    }
}
