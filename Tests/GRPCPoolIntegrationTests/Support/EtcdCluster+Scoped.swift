import DemoServices
import GRPCPool

/// Runs `body` with a started 3-member ``EtcdCluster`` on loopback, stopped (and its data
/// removed) afterwards whatever happens.
func withEtcdCluster<Result>(
    tls: EtcdCluster.TLSFiles? = nil,
    _ body: (EtcdCluster) async throws -> Result
) async throws -> Result {
    let cluster = try await EtcdCluster.start(tls: tls)
    do {
        let result = try await body(cluster)
        await cluster.stop()
        return result
    } catch {
        await cluster.stop()
        throw error
    }
}

/// A service read from `prefix` in `cluster`, with `poolSize` connections; the cluster is
/// tried again at most every 500 ms after a failure.
func etcdConfig(
    _ cluster: EtcdCluster,
    prefix: String,
    poolSize: Int,
    configure: (inout PoolManager.ServiceConfig) -> Void = { _ in }
) -> PoolManager.ServiceConfig {
    testConfig(["etcd:///\(prefix)"], poolSize: poolSize) {
        $0.discovery.etcd = .init(
            endpoints: cluster.members.map { .init(host: "127.0.0.1", port: $0.clientPort) },
            retryMaximum: .milliseconds(500)
        )
        configure(&$0)
    }
}

/// grpc-go's registration value for `host:port`.
func registration(_ host: String, _ port: Int) -> String { "{\"Addr\":\"\(host):\(port)\",\"Metadata\":null}" }
