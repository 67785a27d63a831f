import DemoServices
import Foundation
import GRPCPool

extension AdaptiveBench {
    /// Three backends registered in a real 3-member etcd cluster on loopback (grpc-go's naming,
    /// each on a lease kept alive as a registering server keeps it), a fourth registered mid-run:
    /// when the pool's first call reaches it, its share of the calls over the two seconds after,
    /// and the calls that failed throughout. A pool of 8 spreads 3/3/2, then 2/2/2/2: the new
    /// backend's fair share is 25 %.
    static func etcdBackendAdded(say: (String) -> Void) async throws -> [String: Any] {
        let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"]
        var backends: [DemoServer] = []
        for host in hosts {
            let backend = DemoServer(host: host, port: backends.first?.port ?? 0)
            try await backend.start()
            backends.append(backend)
        }
        let port = backends[0].port
        let cluster = try await EtcdCluster.start()
        var registrars: [EtcdCluster.Registrar] = []
        do {
            for (index, host) in hosts.prefix(3).enumerated() {
                registrars.append(try await cluster.register("bench/echo/\(index)", address: "\(host):\(port)"))
            }
            var config = PoolManager.ServiceConfig(endpoints: [.init(target: "etcd:///bench/echo")], poolSize: 8)
            config.discovery.etcd = .init(
                endpoints: cluster.members.map { .init(host: "127.0.0.1", port: $0.clientPort) }
            )
            let row = try await withPool(config) { pool in
                let tally = Tally()
                let stop = StopSignal()
                async let running: Void = load(pool, callers: 16, tally: tally, stop: stop)
                try await Task.sleep(for: .seconds(1))
                let before = SocketTable.established(to: hosts, port: port)
                registrars.append(try await cluster.register("bench/echo/3", address: "\(hosts[3]):\(port)"))
                let registered = ContinuousClock.now
                // The new server's own count: the first call it served (each call's end wakes the wait).
                let newBackend = backends[3]
                let called = await pool.waitUntil(timeLimit: .seconds(10)) { _ in newBackend.requestCount > 0 }
                let firstCall = (ContinuousClock.now - registered).seconds
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
                            "etcd backend registered (3→4 keys, 3-member cluster, pool of 8): connections %@ → %@, first call on the new backend after %@; %.0f %% of the calls in the 2 s after; %d failed",
                        before.map(String.init).joined(separator: "/"),
                        after.map(String.init).joined(separator: "/"),
                        called ? String(format: "%.3f s", firstCall) : "NEVER",
                        share * 100,
                        tally.failed.value
                    )
                )
                return [
                    "workload": "etcd backend registered", "new_address_share": share, "failed": tally.failed.value,
                    "first_call_s": called ? firstCall : -1, "ok": tally.ok.value,
                    "connections_before": before, "connections_after": after,
                ]
            }
            for registrar in registrars { await registrar.kill() }
            await cluster.stop()
            for backend in backends { await backend.stop() }
            return row
        } catch {
            for registrar in registrars { await registrar.kill() }
            await cluster.stop()
            for backend in backends { await backend.stop() }
            throw error
        }
    }
}
