internal import CoreMetrics
internal import Foundation
internal import GRPCPoolCoreBridge
internal import Logging

#if canImport(Glibc)
internal import Glibc
#elseif canImport(Darwin)
internal import Darwin
#endif

/// Finding the endpoints' addresses, and spreading the connections over them.
extension ConnectionPool {
    /// Where the pool's connections go before any lookup: spread over the addresses known
    /// without one (a `dns:` name counts as its own target until it is looked up).
    static func initialPlacements(_ book: AddressBook, count: Int) -> [Placement] {
        book.plan(for: Array(repeating: nil, count: count), size: count).enumerated().map { index, placement in
            placement ?? book.placements[index % book.placements.count]
        }
    }

    /// The id subsetting is keyed by when the configuration gives none: the host's name (a
    /// pod's name in Kubernetes).
    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "" }
        return String(cString: buffer)
    }

    /// Looks the endpoints' names up again every `resolutionInterval` (at the answers' TTL
    /// when it is shorter), and sooner when a connection attempt fails, but never sooner than
    /// `minResolutionInterval` after the last lookup; moves connections when the addresses
    /// change. Returns when cancelled.
    func discover(firstTTL: Duration?) async {
        guard self.addressBook.withLock({ $0.hasNames }) else { return }
        let discovery = self.config.discovery
        var last = self.clock.now
        var ttl = firstTTL
        while true {
            let observed = self.resolutionRequests.generation
            let interval = Self.lookupInterval(ttl: ttl, discovery)
            // Asked for (a connection attempt failed), or the interval is up.
            let remaining = self.clock.now.duration(to: last.advanced(by: interval))
            let asked = await self.clock.withTimeLimit(remaining) {
                await self.resolutionRequests.wait(after: observed)
            }
            if Task.isCancelled { return }
            if asked {
                do { try await self.clock.sleep(until: last + discovery.minResolutionInterval) } catch { return }
            }
            last = self.clock.now
            ttl = await self.lookUpAddresses(beforeStart: false)
        }
    }

    /// The time from one lookup to the next: the interval, or the answers' TTL when that is
    /// shorter, but never less than the shortest interval.
    static func lookupInterval(ttl: Duration?, _ discovery: PoolManager.Discovery) -> Duration {
        guard let ttl, ttl < discovery.resolutionInterval else { return discovery.resolutionInterval }
        return max(ttl, discovery.minResolutionInterval)
    }

    /// Looks up every name once; where the addresses changed, plans the connections again.
    /// Before the monitors start (`beforeStart`), the connections are placed directly, without
    /// connecting anywhere first. Returns the shortest TTL of the answers, when one gave a TTL.
    @discardableResult
    func lookUpAddresses(beforeStart: Bool) async -> Duration? {
        let targets = self.addressBook.withLock { $0.targets }
        var changed = false
        var shortest: Duration?
        for (index, target) in targets.enumerated() {
            guard case .dns(let server, let name) = target else { continue }
            let endpoint = self.config.endpoints[index]
            let timeout = self.config.discovery.resolutionTimeout
            // The lookup's time limit runs on the pool's clock; c-ares's own timeouts bound the
            // thread that asks.
            let lookup = await self.clock.withTimeLimit(timeout) {
                () async -> Result<DNSResolver.Answer, DNSResolver.Failure> in
                do throws(DNSResolver.Failure) {
                    return .success(try await DNSResolver.resolve(name, server: server, timeout: timeout))
                } catch {
                    return .failure(error)
                }
            }
            do {
                let answer = try lookup.get()
                if let ttl = answer.ttl { shortest = min(shortest ?? ttl, ttl) }
                let placements = answer.shares.map {
                    Placement(address: $0.address, endpoint: endpoint, authority: $0.authority, weight: $0.weight)
                }
                if self.addressBook.withLock({ $0.update(endpoint: index, to: placements) }) {
                    changed = true
                    self.events.emit(.resolved(endpoint: endpoint.description, addresses: placements.map(\.address)))
                }
            } catch {
                self.addressBook.withLock { $0.failures += 1 }
                self.resolutionFailureCounter.increment()
                self.events.emit(.resolutionFailed(endpoint: endpoint.description, reason: error.description))
            }
        }
        if changed { self.rebalance(beforeStart: beforeStart) }
        return shortest
    }

    /// Plans the working set's connections over the addresses and moves those the plan puts
    /// elsewhere; `adding` joins the working set now (dynamic sizing), before it is activated.
    func rebalance(adding: [PooledConnection] = [], beforeStart: Bool = false) {
        let moves = self.addressBook.withLock { book -> [(PooledConnection, from: String)] in
            let working = self.connections.filter { connection in
                connection.isActive || adding.contains { $0 === connection }
            }
            let plan = book.plan(for: working.map(\.placement), size: self.connections.count)
            var moves: [(PooledConnection, from: String)] = []
            for (connection, placement) in zip(working, plan) {
                let current = connection.placement
                guard let placement, placement != current else { continue }
                connection.place(placement)
                moves.append((connection, current.address))
            }
            return moves
        }
        for (connection, from) in moves {
            if beforeStart {
                connection.retarget()
            } else {
                connection.move(from: from)
            }
        }
    }
}
