import DemoServices
import GRPCCore
import GRPCNIOTransportHTTP2
import GRPCPool
import Synchronization

/// How a row's client is configured: what a user gets without tuning, or the fastest path.
enum BenchSettings: String, CaseIterable, Sendable {
    /// Compression and retries off, no deadline: the fastest path, tuned for small messages.
    case tuned
    /// What a user gets without tuning: the README's defaults (gzip with its
    /// `compressionThreshold`, retries on) and a 10 s deadline on every call. A NIO client on
    /// these settings gzips every message, retries with the same policy and sets the same deadline.
    case defaults
    /// The defaults as they were before 2026-12-06: every message gzipped (`compressionThreshold`
    /// 0), and unary calls retried by GRPCCore's retry executor (the call brings the policy, so
    /// the pool's transport leaves retrying to GRPCCore).
    case before = "defaults before"

    /// The pool's service id for these settings.
    var serviceID: ServiceID {
        switch self {
        case .tuned: "bench"
        case .defaults: "bench-defaults"
        case .before: "bench-before"
        }
    }

    /// The deadline a user sets.
    static let deadline = Duration.seconds(10)

    /// The pool's configuration for these settings.
    func config(endpoints: [PoolManager.Endpoint], connections: Int) -> PoolManager.ServiceConfig {
        var config = PoolManager.ServiceConfig(endpoints: endpoints, poolSize: connections)
        config.maxReceiveMessageSize = 16 << 20
        switch self {
        case .tuned:
            config.compression = false
            config.enableRetries = false
        case .defaults:
            break
        case .before:
            config.compressionThreshold = 0
        }
        return config
    }

    /// The options of every call on these settings; `retries` adds the pool's default retry
    /// policy (for a NIO client, which has none of its own, and for the pool as it was before).
    func callOptions(retries: Bool) -> CallOptions {
        var options = CallOptions.defaults
        guard self != .tuned else { return options }
        options.timeout = Self.deadline
        if retries || self == .before {
            let policy = PoolManager.CallRetryPolicy.defaults
            options.executionPolicy = .retry(
                RetryPolicy(
                    maxAttempts: policy.maxAttempts,
                    initialBackoff: policy.initialBackoff,
                    maxBackoff: policy.maxBackoff,
                    backoffMultiplier: policy.backoffMultiplier,
                    retryableStatusCodes: [.unavailable]
                )
            )
        }
        return options
    }
}

/// The clients under test, all against the same server.
final class BenchClients: Sendable {
    let manager: PoolManager
    let pool: ConnectionPool
    /// The pool-wide stub's client per settings (the tuned one always; the others when asked for).
    let poolClients: [BenchSettings: GRPCClient<PooledTransport>]
    let nioClients: [GRPCClient<HTTP2ClientTransport.Posix>]
    /// A NIO client that gzips every message, as the defaults rows' peer.
    let nioGzip: GRPCClient<HTTP2ClientTransport.Posix>?
    let nioTasks: [Task<Void, any Error>]
    let managerTask: Task<Void, any Error>
    let core: CoreBenchChannel
    private let cursor = Atomic(0)

    static let descriptor = MethodDescriptor(fullyQualifiedService: "bench.Echo", method: "Unary", type: .unary)
    /// The same method as the core layer names it.
    static let unaryPath = "/bench.Echo/Unary"

    convenience init(
        endpoint: PoolManager.Endpoint,
        connections: Int,
        nioClients: Int? = nil,
        settings: [BenchSettings] = [.tuned]
    ) async throws {
        try await self.init(endpoints: [endpoint], connections: connections, nioClients: nioClients, settings: settings)
    }

    /// The pool spreads its connections over `endpoints` (one pool per entry of `settings`); the
    /// NIO clients and the core channel go to the first.
    init(
        endpoints: [PoolManager.Endpoint],
        connections: Int,
        nioClients: Int? = nil,
        balancing: BalancingPolicy = .roundRobin,
        settings: [BenchSettings] = [.tuned]
    ) async throws {
        let endpoint = endpoints[0]
        let all = [.tuned] + settings.filter { $0 != .tuned }
        var services: [ServiceID: PoolManager.ServiceConfig] = [:]
        for setting in all {
            var config = setting.config(endpoints: endpoints, connections: connections)
            config.balancing = balancing
            services[setting.serviceID] = config
        }
        self.manager = try PoolManager(services: services, logger: .cli(verbose: false))
        self.pool = try self.manager.pool(for: BenchSettings.tuned.serviceID)
        var clients: [BenchSettings: GRPCClient<PooledTransport>] = [:]
        for setting in all { clients[setting] = try self.manager.client(for: setting.serviceID) }
        self.poolClients = clients
        let manager = self.manager
        self.managerTask = Task { try await manager.run() }
        var nio: [GRPCClient<HTTP2ClientTransport.Posix>] = []
        var tasks: [Task<Void, any Error>] = []
        func nioClient(gzip: Bool) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
            var config = HTTP2ClientTransport.Posix.Config.defaults
            if gzip { config.compression = .init(algorithm: .gzip, enabledAlgorithms: .all) }
            let transport = try HTTP2ClientTransport.Posix(
                target: .ipv4(address: endpoint.host, port: endpoint.port),
                transportSecurity: .plaintext,
                config: config
            )
            let client = GRPCClient(transport: transport)
            tasks.append(Task { try await client.runConnections() })
            return client
        }
        for _ in 0..<(nioClients ?? max(connections, 1)) { nio.append(try nioClient(gzip: false)) }
        self.nioGzip = all.count > 1 ? try nioClient(gzip: true) : nil
        self.nioClients = nio
        self.nioTasks = tasks
        self.core = try CoreBenchChannel(target: endpoint.description, maxReceiveMessageSize: 16 << 20)
        _ = await self.manager.waitUntilHealthy(timeLimit: .seconds(10))
    }

    func shutdown() {
        self.manager.beginGracefulShutdown()
        for client in self.nioClients + (self.nioGzip.map { [$0] } ?? []) { client.beginGracefulShutdown() }
        self.core.close()
    }

    func unary<T: ClientTransport>(
        _ client: GRPCClient<T>,
        _ payload: [UInt8],
        metadata: Metadata = [:],
        options: CallOptions = .defaults
    ) async throws {
        let reply = try await client.unary(
            request: ClientRequest(message: payload, metadata: metadata),
            descriptor: Self.descriptor,
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: options
        ) { try $0.message }
        guard reply.count == payload.count else { throw RPCError(code: .dataLoss, message: "short echo") }
    }

    /// The pool's stub client for `settings`.
    func poolClient(_ settings: BenchSettings = .tuned) -> GRPCClient<PooledTransport> {
        self.poolClients[settings]!
    }

    /// (a) a stub call on the pool-wide transport.
    func poolStub(_ payload: [UInt8], settings: BenchSettings = .tuned, metadata: Metadata = [:]) async throws {
        try await self.unary(
            self.poolClient(settings),
            payload,
            metadata: metadata,
            options: settings.callOptions(retries: false)
        )
    }

    /// (b) lease a connection, call on its client.
    func lease(_ payload: [UInt8]) async throws {
        try await self.manager.withConnection(to: BenchSettings.tuned.serviceID) { connection in
            try await self.unary(connection.client, payload)
        }
    }

    /// (c) grpc-swift-2's own NIO client (one); on the defaults, the gzipping one with the pool's
    /// retry policy.
    func nio(_ payload: [UInt8], settings: BenchSettings = .tuned) async throws {
        try await self.unary(self.nioClient(settings), payload, options: settings.callOptions(retries: true))
    }

    /// The NIO client for `settings`.
    func nioClient(_ settings: BenchSettings = .tuned) -> GRPCClient<HTTP2ClientTransport.Posix> {
        settings == .tuned ? self.nioClients[0] : self.nioGzip!
    }

    static let stream = MethodDescriptor(
        fullyQualifiedService: "bench.Echo",
        method: "Stream",
        type: .bidirectionalStreaming
    )

    /// One bidirectional stream with 10 ping-pongs (each message waits for its echo).
    func pingPong<T: ClientTransport>(
        _ client: GRPCClient<T>,
        _ payload: [UInt8],
        options: CallOptions = .defaults
    ) async throws {
        let (turns, turn) = AsyncStream.makeStream(of: Void.self)
        let request = StreamingClientRequest(of: [UInt8].self) { writer in
            var iterator = turns.makeAsyncIterator()
            for _ in 0..<10 {
                try await writer.write(payload)
                guard await iterator.next() != nil else { return }
            }
        }
        let echoed = try await client.bidirectionalStreaming(
            request: request,
            descriptor: Self.stream,
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: options
        ) { response in
            var count = 0
            for try await _ in response.messages {
                count += 1
                turn.yield()
            }
            turn.finish()
            return count
        }
        guard echoed == 10 else { throw RPCError(code: .dataLoss, message: "\(echoed) of 10 echoes") }
    }

    /// A pool stream of 10 ping-pongs on `settings`.
    func poolPingPong(_ payload: [UInt8], settings: BenchSettings = .tuned) async throws {
        try await self.pingPong(self.poolClient(settings), payload, options: settings.callOptions(retries: false))
    }

    /// A NIO stream of 10 ping-pongs on `settings`.
    func nioPingPong(_ payload: [UInt8], settings: BenchSettings = .tuned) async throws {
        try await self.pingPong(self.nioClient(settings), payload, options: settings.callOptions(retries: true))
    }

    /// One acquire and release of a pooled connection (no RPC).
    func acquireRelease() async throws {
        try await self.manager.withConnection(to: BenchSettings.tuned.serviceID) { _ in }
    }

    /// (c) N NIO clients, round robin.
    func nioRoundRobin(_ payload: [UInt8]) async throws {
        let index = self.cursor.wrappingAdd(1, ordering: .relaxed).oldValue % self.nioClients.count
        try await self.unary(self.nioClients[index], payload)
    }

    /// (d) one plain core channel through this package's core layer, no pool.
    func coreChannel(_ payload: [UInt8]) async throws {
        _ = try await self.core.unary(method: Self.unaryPath, request: payload)
    }

    /// (d) a stream of 10 ping-pongs through the core layer alone (no GRPCCore, no pool).
    func corePingPong(_ payload: [UInt8]) async throws {
        let echoed = try await self.core.pingPong(method: "/bench.Echo/Stream", message: payload, rounds: 10)
        guard echoed == 10 else { throw RPCError(code: .dataLoss, message: "\(echoed) of 10 echoes") }
    }

    /// (d) a server-streaming call through the core layer alone: `count` copies of `payload` down.
    func coreServerStream(_ payload: [UInt8], count: Int) async throws {
        let received = try await self.core.serverStream(
            method: "/bench.Echo/ServerStream",
            request: payload,
            metadata: ["echo-repeat": "\(count)"]
        )
        guard received == count else { throw RPCError(code: .dataLoss, message: "\(received) of \(count) messages") }
    }

    /// (d) a client-streaming call through the core layer alone: `count` copies of `payload` up.
    func coreClientStream(_ payload: [UInt8], count: Int) async throws {
        let reply = try await self.core.clientStream(method: "/bench.Echo/ClientStream", message: payload, count: count)
        guard reply.count == count * payload.count else { throw RPCError(code: .dataLoss, message: "short reply") }
    }

    /// (a′) the pool's own unary call on raw bytes (`ConnectionPool.unary`): the pool without GRPCCore.
    func poolRaw(_ payload: [UInt8]) async throws {
        _ = try await self.pool.unary(method: Self.unaryPath, request: payload, timeout: nil)
    }
}
