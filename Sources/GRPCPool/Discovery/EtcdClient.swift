internal import CoreMetrics
internal import Foundation
internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Logging

/// The pool's client of an etcd cluster: a pool of its own to the members (one connection to
/// each, health-checked and repaired like any pool, so a call goes to a member that answers),
/// and the etcd v3 calls discovery needs — a read of a prefix, and a Watch of it — through the
/// generated stubs, over the pool's own C-core call path.
final class EtcdClient: Sendable {
    /// The pool to the members.
    let pool: ConnectionPool
    let config: PoolManager.Discovery.Etcd
    /// The token of etcd's authentication, once given.
    private let token = Locked<String?>(nil)

    struct WatchEnded: Error, CustomStringConvertible {
        var description: String
    }

    init(
        _ config: PoolManager.Discovery.Etcd,
        for service: ServiceID,
        logger: Logger,
        metricsFactory: any MetricsFactory,
        clock: any PoolClock
    ) throws {
        self.config = config
        let members = config.serviceConfig
        self.pool = try ConnectionPool(
            serviceID: ServiceID(rawValue: "\(service).etcd"),
            config: members,
            credentials: try members.validated(),
            logger: logger,
            metricsFactory: metricsFactory,
            clock: clock
        )
    }

    /// The keys and values under `prefix`, and the revision they are at.
    func range(prefix: String) async throws -> (pairs: [(key: String, value: Data)], revision: Int64) {
        var request = Etcdserverpb_RangeRequest()
        request.key = Data(prefix.utf8)
        request.rangeEnd = RegistryState.rangeEnd(of: prefix)
        var options = CallOptions.defaults
        options.timeout = self.config.requestTimeout
        let response = try await Etcdserverpb_KV.Client(wrapping: self.pool.client).range(
            request,
            metadata: try await self.metadata(),
            options: options
        )
        return (response.kvs.map { (String(decoding: $0.key, as: UTF8.self), $0.value) }, response.header.revision)
    }

    /// Watches `prefix` from `revision` on, handing each response to `receive`, until the
    /// stream ends (then it throws ``WatchEnded``), fails, or `receive` throws.
    func watch(
        prefix: String,
        from revision: Int64,
        _ receive: @escaping @Sendable (Etcdserverpb_WatchResponse) throws -> Void
    ) async throws {
        var create = Etcdserverpb_WatchCreateRequest()
        create.key = Data(prefix.utf8)
        create.rangeEnd = RegistryState.rangeEnd(of: prefix)
        create.startRevision = revision
        create.progressNotify = true
        var request = Etcdserverpb_WatchRequest()
        request.createRequest = create
        // The request side stays open while the watch lasts: etcd ends a watch whose client
        // has closed its side.
        let ended = OneShot<Void>()
        try await Etcdserverpb_Watch.Client(wrapping: self.pool.client).watch(
            metadata: try await self.metadata(),
            requestProducer: { [request] writer in
                try await writer.write(request)
                await ended.wait(cancelled: ())
            },
            onResponse: { response in
                defer { ended.set(()) }
                for try await message in response.messages { try receive(message) }
                throw WatchEnded(description: "the member ended the watch")
            }
        )
    }

    /// What every call carries: `hasleader` (a member cut off from the leader ends the call
    /// instead of serving stale data, as etcd's own client asks), and the authentication token.
    private func metadata() async throws -> Metadata {
        var metadata: Metadata = ["hasleader": "true"]
        guard let name = self.config.username, let password = self.config.password else { return metadata }
        let token: String
        if let known = self.token.withLock({ $0 }) {
            token = known
        } else {
            var request = Etcdserverpb_AuthenticateRequest()
            request.name = name
            request.password = password
            var options = CallOptions.defaults
            options.timeout = self.config.requestTimeout
            token = try await Etcdserverpb_Auth.Client(wrapping: self.pool.client).authenticate(
                request,
                options: options
            )
            .token
            self.token.withLock { $0 = token }
        }
        metadata.addString(token, forKey: "token")
        return metadata
    }

    /// Forgets the token: the next call authenticates again (etcd's tokens expire).
    func forgetToken() {
        self.token.withLock { $0 = nil }
    }
}
