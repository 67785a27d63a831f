internal import Foundation
internal import GRPCPoolCoreBridge

/// Looks names up with c-ares, on a thread of its own: the lookup waits on its sockets, and
/// Swift's cooperative pool must never wait on a C call.
enum DNSResolver {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// What a lookup found: where connections may go, and how long the answer holds.
    struct Answer: Sendable, Equatable {
        var shares: [ServiceRecords.Share]
        /// The shortest TTL of the records that gave the addresses; `nil` when none gave one
        /// (0, or an address from `/etc/hosts`).
        var ttl: Duration?
    }

    /// The addresses `name` names, asked of `server` (or the system's configuration).
    ///
    /// - Throws: ``Failure`` when the lookup fails, times out, or finds no address.
    static func resolve(
        _ name: ServiceTarget.Name,
        server: ServiceTarget.DNSServer?,
        timeout: Duration
    ) async throws(Failure) -> Answer {
        if case .host(let host, let port) = name, Self.isIPLiteral(host) {
            let address = ServiceTarget.address(ip: host, port: port)
            let authority = ServiceTarget.authority(host: host, port: port)
            return Answer(shares: [.init(address: address, authority: authority, weight: 1)], ttl: nil)
        }
        // The thread's answer, or the task's cancellation (the caller's time limit on the pool's
        // clock) first: then the thread finishes on its own, within `timeout`, and its answer
        // is dropped.
        let answer = OneShot<Result<Answer, Failure>>()
        let thread = Thread {
            _ = answer.set(Result { () throws(Failure) in try Self.lookUp(name, server: server, timeout: timeout) })
        }
        thread.name = "grpc-pool-dns"
        thread.start()
        let unanswered = Failure(
            description: "\(name): no answer within \(timeout)\(server.map { " from \($0)" } ?? "")"
        )
        let found = try await answer.wait(cancelled: .failure(unanswered)).get()
        guard !found.shares.isEmpty else {
            throw Failure(description: "\(name): no addresses\(server.map { " at \($0)" } ?? "")")
        }
        return found
    }

    static func isIPLiteral(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The lookup itself, on the calling thread: every query on one c-ares channel, driven
    /// until all have answered or `timeout` has passed.
    private static func lookUp(
        _ name: ServiceTarget.Name,
        server: ServiceTarget.DNSServer?,
        timeout: Duration
    ) throws(Failure) -> Answer {
        let channel = try CAresChannel(server: server, timeout: timeout)
        let deadline = ContinuousClock.now + timeout
        let within = " within \(timeout)\(server.map { " from \($0)" } ?? "")"
        switch name {
        case .host(let host, let port):
            var result: Result<[CAresChannel.Address], Failure>?
            channel.addresses(of: host) { result = $0 }
            channel.run(until: deadline)
            let addresses = try (result ?? .failure(Failure(description: "\(host): no answer\(within)"))).get()
            let authority = ServiceTarget.authority(host: host, port: port)
            let shares = Array(Set(addresses.map(\.ip))).sorted().map {
                ServiceRecords.Share(
                    address: ServiceTarget.address(ip: $0, port: port),
                    authority: authority,
                    weight: 1
                )
            }
            return Answer(shares: shares, ttl: Self.shortestTTL(addresses))
        case .service(let service):
            var records: Result<[CAresChannel.ServiceRecord], Failure>?
            var addresses: [Int: [CAresChannel.Address]] = [:]
            channel.serviceRecords(of: service) { found in
                records = found
                guard case .success(let list) = found else { return }
                for (index, record) in list.enumerated() {
                    channel.addresses(of: record.target) { addresses[index] = try? $0.get() }
                }
            }
            channel.run(until: deadline)
            let list = try (records ?? .failure(Failure(description: "\(service): no answer\(within)"))).get()
            let resolved = list.enumerated().map { index, record in
                ServiceRecords.Record(
                    target: record.target,
                    port: record.port,
                    priority: record.priority,
                    weight: record.weight,
                    addresses: addresses[index].map { $0.map(\.ip) }
                )
            }
            return Answer(
                shares: ServiceRecords.shares(of: resolved),
                ttl: Self.shortestTTL(addresses.values.flatMap(\.self))
            )
        }
    }

    private static func shortestTTL(_ addresses: [CAresChannel.Address]) -> Duration? {
        addresses.map(\.ttl).filter { $0 > 0 }.min().map { .seconds($0) }
    }
}
