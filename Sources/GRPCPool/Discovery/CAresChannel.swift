internal import CAres
internal import Foundation

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// One lookup's c-ares channel, driven by the one thread that runs the lookup: queries are
/// started, then ``run(until:)`` waits on the channel's sockets with `poll` and lets c-ares read,
/// retry, fall back to TCP and parse, until every query has answered or the deadline passes.
///
/// c-ares does everything that touches the wire: the queries (EDNS, TCP when an answer is
/// truncated), `/etc/hosts` and `resolv.conf` when no server is named, and the parsing of
/// addresses, TTLs and SRV records.
final class CAresChannel {
    /// An address and the TTL its record was given, in seconds.
    struct Address {
        var ip: String
        var ttl: Int
    }

    /// One SRV record, as RFC 2782 defines it.
    struct ServiceRecord {
        var target: String
        var port: Int
        var priority: Int
        var weight: Int
    }

    private var channel: ares_channel?
    private var pending = 0
    private let timeout: Duration
    /// ` from <server>` when a server is named: every failure says whom it asked.
    private let asked: String

    private static let initialized: Int32 = ares_library_init(ARES_LIB_INIT_ALL)

    /// A channel asking `server`, or the system's configuration (`/etc/hosts`, then the servers
    /// of `resolv.conf`) when it is `nil`; each query is tried twice, the first try waiting a
    /// third of `timeout`.
    init(server: ServiceTarget.DNSServer?, timeout: Duration) throws(DNSResolver.Failure) {
        self.timeout = timeout
        self.asked = server.map { " from \($0)" } ?? ""
        guard Self.initialized == ARES_SUCCESS else { throw Self.failure("c-ares", Self.initialized) }
        var options = ares_options()
        options.flags = ARES_FLAG_EDNS
        options.ednspsz = 4096
        options.tries = 2
        options.timeout = Int32(max(timeout / 3, .milliseconds(10)) / .milliseconds(1))
        var mask = ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ | ARES_OPT_TRIES | ARES_OPT_TIMEOUTMS
        // A named server answers alone: no hosts file.
        let lookups = strdup(server == nil ? "fb" : "b")
        defer { free(lookups) }
        options.lookups = lookups
        mask |= ARES_OPT_LOOKUPS
        let status = ares_init_options(&self.channel, &options, mask)
        guard status == ARES_SUCCESS else { throw Self.failure("c-ares", status) }
        if let server {
            let set = ares_set_servers_ports_csv(self.channel, server.description)
            guard set == ARES_SUCCESS else { throw Self.failure("DNS server \(server)", set) }
        }
    }

    deinit {
        ares_destroy(self.channel)
    }

    static func failure(_ subject: String, _ status: Int32) -> DNSResolver.Failure {
        DNSResolver.Failure(description: "\(subject): \(String(cString: ares_strerror(status)))")
    }

    /// A query's failure; one ``run(until:)`` cancelled at its deadline says so.
    private func failure(_ subject: String, _ status: Int32) -> DNSResolver.Failure {
        guard status != ARES_ECANCELLED else {
            return DNSResolver.Failure(description: "\(subject): no answer within \(self.timeout)\(self.asked)")
        }
        return DNSResolver.Failure(description: "\(subject): \(String(cString: ares_strerror(status)))\(self.asked)")
    }

    /// Looks up `host`'s A and AAAA records; `done` is called from ``run(until:)``.
    func addresses(of host: String, _ done: @escaping (Result<[Address], DNSResolver.Failure>) -> Void) {
        var hints = ares_addrinfo_hints()
        hints.ai_family = AF_UNSPEC
        hints.ai_flags = ARES_AI_NOSORT
        self.pending += 1
        let context = Unmanaged.passRetained(
            AddressCompletion { [unowned self] status, info in
                self.pending -= 1
                guard status == ARES_SUCCESS, let info else {
                    done(.failure(self.failure(host, status)))
                    return
                }
                done(.success(Self.addresses(in: info)))
            }
        )
        ares_getaddrinfo(
            self.channel,
            host,
            nil,
            &hints,
            { argument, status, _, info in
                Unmanaged<AddressCompletion>.fromOpaque(argument!).takeRetainedValue().done(status, info)
                if let info { ares_freeaddrinfo(info) }
            },
            context.toOpaque()
        )
    }

    /// Looks up `name`'s SRV records (with the search domains of `resolv.conf`); `done` is
    /// called from ``run(until:)``.
    func serviceRecords(of name: String, _ done: @escaping (Result<[ServiceRecord], DNSResolver.Failure>) -> Void) {
        self.pending += 1
        let context = Unmanaged.passRetained(
            AnswerCompletion { [unowned self] status, bytes, length in
                self.pending -= 1
                var list: UnsafeMutablePointer<ares_srv_reply>?
                let parsed = status == ARES_SUCCESS ? ares_parse_srv_reply(bytes, length, &list) : status
                guard parsed == ARES_SUCCESS else {
                    done(.failure(self.failure(name, parsed)))
                    return
                }
                defer { ares_free_data(list) }
                var records: [ServiceRecord] = []
                var next = list
                while let record = next?.pointee {
                    let target = String(cString: record.host)
                    records.append(
                        ServiceRecord(
                            target: target.hasSuffix(".") ? String(target.dropLast()) : target,
                            port: Int(record.port),
                            priority: Int(record.priority),
                            weight: Int(record.weight)
                        )
                    )
                    next = record.next
                }
                done(.success(records))
            }
        )
        ares_search(
            self.channel,
            name,
            CAres_class_in,
            CAres_type_srv,
            { argument, status, _, bytes, length in
                Unmanaged<AnswerCompletion>.fromOpaque(argument!).takeRetainedValue().done(status, bytes, length)
            },
            context.toOpaque()
        )
    }

    /// Drives the channel until no query is pending, or until `deadline`: then the pending
    /// queries are cancelled (their callbacks see `ARES_ECANCELLED`).
    func run(until deadline: ContinuousClock.Instant) {
        while self.pending > 0 {
            let left = deadline - .now
            guard left > .zero else {
                ares_cancel(self.channel)
                return
            }
            var sockets = [ares_socket_t](repeating: ARES_SOCKET_BAD, count: Int(ARES_GETSOCK_MAXNUM))
            let bits = ares_getsock(self.channel, &sockets, Int32(ARES_GETSOCK_MAXNUM))
            var polled: [pollfd] = []
            for index in 0..<Int(ARES_GETSOCK_MAXNUM) {
                let readable = CAres_socket_readable(bits, Int32(index)) != 0
                let writable = CAres_socket_writable(bits, Int32(index)) != 0
                guard readable || writable else { continue }
                let events = (readable ? Int16(POLLIN) : 0) | (writable ? Int16(POLLOUT) : 0)
                polled.append(pollfd(fd: sockets[index], events: events, revents: 0))
            }
            var most = timeval(
                tv_sec: Int(left.components.seconds),
                tv_usec: Int(left.components.attoseconds / 1_000_000_000_000) + 1
            )
            var wait = timeval()
            let bound = ares_timeout(self.channel, &most, &wait).pointee
            let milliseconds = Int32(bound.tv_sec * 1000 + bound.tv_usec / 1000) + 1
            let ready = poll(&polled, nfds_t(polled.count), milliseconds)
            if ready <= 0 {
                // Nothing to read: c-ares retries or fails the queries whose time is up.
                ares_process_fd(self.channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD)
                continue
            }
            for entry in polled where entry.revents != 0 {
                let failed = entry.revents & Int16(POLLERR | POLLHUP) != 0
                let read = entry.revents & Int16(POLLIN) != 0 || failed ? entry.fd : ARES_SOCKET_BAD
                let write = entry.revents & Int16(POLLOUT) != 0 ? entry.fd : ARES_SOCKET_BAD
                ares_process_fd(self.channel, read, write)
            }
        }
    }

    private static func addresses(in info: UnsafeMutablePointer<ares_addrinfo>) -> [Address] {
        var found: [Address] = []
        var next = info.pointee.nodes
        while let node = next?.pointee {
            defer { next = node.ai_next }
            guard let address = node.ai_addr else { continue }
            var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
            switch node.ai_family {
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
            let ip = String(decoding: text[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            found.append(Address(ip: ip, ttl: Int(node.ai_ttl)))
        }
        return found
    }
}

/// A query's callback, carried through c-ares as its `void *` argument.
private final class AddressCompletion {
    let done: (Int32, UnsafeMutablePointer<ares_addrinfo>?) -> Void

    init(_ done: @escaping (Int32, UnsafeMutablePointer<ares_addrinfo>?) -> Void) {
        self.done = done
    }
}

/// A query's callback, carried through c-ares as its `void *` argument.
private final class AnswerCompletion {
    let done: (Int32, UnsafeMutablePointer<UInt8>?, Int32) -> Void

    init(_ done: @escaping (Int32, UnsafeMutablePointer<UInt8>?, Int32) -> Void) {
        self.done = done
    }
}
