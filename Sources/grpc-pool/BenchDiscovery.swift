import DemoServices
import Foundation
import GRPCPool

extension AdaptiveBench {
    /// Three backends behind one DNS name (a real dnsmasq on loopback), a fourth record added
    /// mid-run: when the new address gets its first connection (counted from the kernel's socket
    /// table), its share of the calls after one re-resolution interval, and the calls that failed
    /// throughout. A pool of 8 spreads 3/3/2, then 2/2/2/2: the new address's fair share is 25 %.
    static func dnsBackendAdded(say: (String) -> Void) async throws -> [String: Any] {
        let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
        var backends: [DemoServer] = []
        for host in hosts {
            let backend = DemoServer(host: host, port: backends.first?.port ?? 0)
            try await backend.start()
            backends.append(backend)
        }
        let port = backends[0].port
        let name = "svc.pool.test"
        let dns = try await DNSServer.start([name: Array(hosts.prefix(3))])
        let interval = Duration.seconds(2)
        var config = PoolManager.ServiceConfig(endpoints: [.init(target: dns.target(name, port: port))], poolSize: 8)
        config.discovery.resolutionInterval = interval
        config.discovery.minResolutionInterval = .milliseconds(500)
        do {
            let row = try await withPool(config) { pool in
                let tally = Tally()
                let stop = StopSignal()
                async let running: Void = load(pool, callers: 16, tally: tally, stop: stop)
                try await Task.sleep(for: .seconds(1))
                let before = SocketTable.established(to: hosts, port: port)
                let added = ContinuousClock.now
                try dns.setRecords([name: hosts])
                let newAddress = "ipv4:\(hosts[3]):\(port)"
                let connected = await pool.waitUntil(timeLimit: interval * 3) { pool in
                    pool.connections.contains { $0.isHealthy && $0.address == newAddress }
                }
                let firstConnection = (ContinuousClock.now - added).seconds
                // The rest of the interval, then the calls of the next two seconds.
                try await Task.sleep(until: added.advanced(by: interval), clock: .continuous)
                for backend in backends { backend.resetCounters() }
                try await Task.sleep(for: .seconds(2))
                let counts = backends.map(\.requestCount)
                let after = SocketTable.established(to: hosts, port: port)
                stop.set()
                await running
                let share = Double(counts[3]) / Double(max(counts.reduce(0, +), 1))
                say(
                    String(
                        format:
                            "DNS record added (3→4 A records, pool of 8, %.0f s interval): connections %@ → %@, first on the new address after %@; %.0f %% of the calls after one interval; %d failed",
                        interval.seconds,
                        before.map(String.init).joined(separator: "/"),
                        after.map(String.init).joined(separator: "/"),
                        connected ? String(format: "%.2f s", firstConnection) : "NEVER",
                        share * 100,
                        tally.failed.value
                    )
                )
                return [
                    "workload": "DNS record added", "new_address_share": share, "failed": tally.failed.value,
                    "first_connection_s": connected ? firstConnection : -1, "ok": tally.ok.value,
                    "connections_before": before, "connections_after": after,
                ]
            }
            await dns.stop()
            for backend in backends { await backend.stop() }
            return row
        } catch {
            await dns.stop()
            for backend in backends { await backend.stop() }
            throw error
        }
    }
}
