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

    /// Looks the endpoints' names up again every `resolutionInterval`, and sooner when a
    /// connection attempt fails, but never sooner than `minResolutionInterval` after the last
    /// lookup; moves connections when the addresses change. Returns when cancelled.
    func discover() async {
        guard self.addressBook.withLock({ $0.hasNames }) else { return }
        let discovery = self.config.discovery
        var last = ContinuousClock.now
        while true {
            let observed = self.resolutionRequests.generation
            do {
                let asked = try await self.resolutionRequests.wait(
                    after: observed,
                    until: last + discovery.resolutionInterval
                )
                if asked { try await Task.sleep(until: last + discovery.minResolutionInterval) }
            } catch {
                return
            }
            last = .now
            await self.lookUpAddresses(beforeStart: false)
        }
    }

    /// Looks up every `dns:` name once; where the addresses changed, plans the connections
    /// again. Before the monitors start (`beforeStart`), the connections are placed directly,
    /// without connecting anywhere first.
    func lookUpAddresses(beforeStart: Bool) async {
        let targets = self.addressBook.withLock { $0.targets }
        var changed = false
        for (index, target) in targets.enumerated() {
            guard case .dns(let server, let host, let port) = target else { continue }
            let endpoint = self.config.endpoints[index].description
            do {
                let addresses = try await DNSResolver.resolve(
                    host: host,
                    port: port,
                    server: server,
                    timeout: self.config.discovery.resolutionTimeout
                )
                let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
                let placements = addresses.map {
                    Placement(address: $0, endpoint: self.config.endpoints[index], authority: authority)
                }
                if self.addressBook.withLock({ $0.update(endpoint: index, to: placements) }) {
                    changed = true
                    self.events.emit(.resolved(endpoint: endpoint, addresses: addresses))
                }
            } catch {
                self.addressBook.withLock { $0.failures += 1 }
                self.resolutionFailureCounter.increment()
                self.events.emit(.resolutionFailed(endpoint: endpoint, reason: error.description))
            }
        }
        if changed { self.rebalance(beforeStart: beforeStart) }
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
                connection.commands.yield(.move(from: from))
            }
        }
    }
}

extension ChangeSignal {
    /// Waits until the generation moves past `observed` (`true`) or until `deadline` (`false`).
    ///
    /// - Throws: `CancellationError` when the task is cancelled.
    func wait(after observed: Int, until deadline: ContinuousClock.Instant) async throws -> Bool {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await Task.sleep(until: deadline)
                return false
            }
            group.addTask {
                try await self.wait(after: observed)
                return true
            }
            defer { group.cancelAll() }
            return try await group.next() ?? false
        }
    }
}
