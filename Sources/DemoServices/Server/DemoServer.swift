public import GRPCCore
internal import GRPCNIOTransportHTTP2
private import NIOConcurrencyHelpers
internal import NIOCore
public import Tracing

/// A real gRPC server on grpc-swift-2's NIO HTTP/2 transport, bound to a loopback port, serving
/// `bench.Echo` (``EchoService``), `grpc.health.v1.Health` (``HealthService``),
/// `grpc.testing.TestService` (``TestService``) and the demo services `demo.STT`, `demo.NLP`
/// and `demo.Summary`.
///
/// It exists to be broken on purpose: ``stop()`` drops the listener and every connection at once
/// (as a crash would), ``restart()`` listens again on the same port, ``behaviour`` makes every
/// echo call slow or failing, and ``peers`` tells how many distinct client connections it served.
///
/// ```swift
/// let server = DemoServer()
/// try await server.start()
/// // … connect to "127.0.0.1:\(server.port)" …
/// await server.stop()
/// ```
public final class DemoServer: Sendable {
    /// Server-wide behaviour of the echo service.
    public struct Behaviour: Sendable, Hashable {
        /// Added before every echo response.
        public var delay: Duration = .zero
        /// When set, every echo call fails with this code and message.
        public var failure: Failure?

        public struct Failure: Sendable, Hashable {
            public var code: RPCError.Code
            public var message: String
            public init(code: RPCError.Code, message: String) {
                self.code = code
                self.message = message
            }
        }

        public init(delay: Duration = .zero, failure: Failure? = nil) {
            self.delay = delay
            self.failure = failure
        }
    }

    /// The host it binds to.
    public let host: String
    /// The HTTP/2 limit on concurrent streams per connection it announces (`nil`: NIO's default).
    public let maxConcurrentStreams: Int?
    /// TLS settings; `nil` serves plaintext.
    public let tls: TLS?
    /// The compression algorithms it accepts on requests and uses on responses to clients that
    /// accept them. Default: every one (the interop cases compress); grpc-swift's own default
    /// is none, which refuses a request whose `grpc-encoding` names any (UNIMPLEMENTED).
    public let compression: CompressionAlgorithmSet

    /// Server-side TLS: PEM files for the certificate chain and key, and, for mutual TLS, the CA
    /// that client certificates must chain to (clients without one are refused).
    public struct TLS: Sendable, Hashable {
        public var certificateChainPath: String
        public var privateKeyPath: String
        public var clientCAPath: String?

        public init(certificateChainPath: String, privateKeyPath: String, clientCAPath: String? = nil) {
            self.certificateChainPath = certificateChainPath
            self.privateKeyPath = privateKeyPath
            self.clientCAPath = clientCAPath
        }
    }
    /// How it manages connections: maximum age (GOAWAY), and the keepalive pings it tolerates.
    public let connectionPolicy: ConnectionPolicy

    /// Server-side connection management, as a gRPC server configures it.
    public struct ConnectionPolicy: Sendable, Hashable {
        /// Sends GOAWAY when a connection reaches this age (gRPC's max connection age); `nil`:
        /// never.
        public var maxAge: Duration?
        /// How long calls may run on after that GOAWAY before the connection is closed.
        public var maxGraceTime: Duration?
        /// Client pings closer together than this count as strikes; after two strikes the server
        /// sends GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and closes. Lenient by default, so
        /// that pooled connections may ping while idle (primer P6).
        public var minPingInterval: Duration
        /// Whether pings on a connection without calls are allowed at all.
        public var allowPingsWithoutCalls: Bool

        public init(
            maxAge: Duration? = nil,
            maxGraceTime: Duration? = nil,
            minPingInterval: Duration = .milliseconds(100),
            allowPingsWithoutCalls: Bool = true
        ) {
            self.maxAge = maxAge
            self.maxGraceTime = maxGraceTime
            self.minPingInterval = minPingInterval
            self.allowPingsWithoutCalls = allowPingsWithoutCalls
        }
    }

    /// The health service, to set statuses on.
    public let health: HealthService
    /// The tracer each RPC it handles is a server span of (``ServerTracingInterceptor``), if any.
    let tracer: (any Tracer)?
    /// Services it serves beside its own (a channelz service, say).
    let extraServices: [any RegistrableRPCService & Sendable]
    let controls: Controls
    private let state: NIOLockedValueBox<State>

    private struct State {
        var port: Int
        var running: Running?
    }

    private struct Running {
        var task: Task<Void, any Error>
        var server: GRPCServer<HTTP2ServerTransport.Posix>
    }

    /// - Parameters:
    ///   - host: the loopback address to bind.
    ///   - port: the port; 0 picks a free one on the first ``start()``, kept for restarts.
    public init(
        host: String = "127.0.0.1",
        port: Int = 0,
        maxConcurrentStreams: Int? = nil,
        tls: TLS? = nil,
        connectionPolicy: ConnectionPolicy = ConnectionPolicy(),
        compression: CompressionAlgorithmSet = .all,
        tracer: (any Tracer)? = nil,
        services: [any RegistrableRPCService & Sendable] = []
    ) {
        self.tracer = tracer
        self.extraServices = services
        self.host = host
        self.maxConcurrentStreams = maxConcurrentStreams
        self.tls = tls
        self.compression = compression
        self.connectionPolicy = connectionPolicy
        self.health = HealthService()
        self.controls = Controls()
        self.state = NIOLockedValueBox(State(port: port, running: nil))
    }

    /// The bound port (0 before the first ``start()``).
    public var port: Int { self.state.withLockedValue { $0.port } }

    /// `host:port`, as a client target.
    public var target: String { "\(self.host):\(self.port)" }

    /// Whether it is listening.
    public var isRunning: Bool { self.state.withLockedValue { $0.running != nil } }

    /// The echo behaviour for calls from now on.
    public var behaviour: Behaviour {
        get { self.controls.behaviour }
        set { self.controls.behaviour = newValue }
    }

    /// Distinct client connections (`ip:port` of the peer) accepted since ``resetCounters()``.
    public var peers: Set<String> { self.controls.peers }

    /// Echo calls the client cancelled while the server was delaying them, and `Stream` calls
    /// the client cancelled mid-stream.
    public var cancelledRPCs: Int { self.controls.cancelledRPCs }

    /// Echo calls that reached a handler since ``resetCounters()``.
    public var requestCount: Int { self.controls.requestCount }

    /// The metadata of the last echo request.
    public var lastRequestMetadata: Metadata { self.controls.lastRequestMetadata }

    /// Forgets the peers and counters seen so far.
    public func resetCounters() { self.controls.reset() }

    /// Fails the next `count` echo calls with `failure`, then answers as before.
    public func failNextCalls(_ count: Int, with failure: Behaviour.Failure) {
        self.controls.failNext(count, with: failure)
    }

    /// Makes the next `count` unary echoes answer OK with a wrong message (the request's bytes
    /// reversed and one appended): data corruption, for checking that a client notices.
    public func corruptNextReplies(_ count: Int) {
        self.controls.corruptNext(count)
    }

    /// Starts listening on the remembered port, if there is one, else on a free port of
    /// ``ServerPorts``, which it keeps for restarts.
    ///
    /// - Throws: when the port cannot be bound.
    public func start() async throws {
        let remembered = self.state.withLockedValue { $0.port }
        if remembered != 0 {
            // After a stop whose server task had to be cancelled, its listener may close a
            // moment later: the port is tried again for up to 10 s.
            let deadline = ContinuousClock.now.advanced(by: .seconds(10))
            while true {
                do {
                    return try await self.listen(on: remembered)
                } catch {
                    guard ServerPorts.isAddressInUse(error), ContinuousClock.now < deadline else { throw error }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
        }
        for attempt in 1... {
            do {
                return try await self.listen(on: ServerPorts.next())
            } catch {
                // Another process's server, or a port outside the tests' reach: the next one.
                guard ServerPorts.isAddressInUse(error), attempt < 64 else { throw error }
            }
        }
        fatalError("unreachable")
    }

    private func listen(on port: Int) async throws {
        var config = HTTP2ServerTransport.Posix.Config.defaults
        config.compression.enabledAlgorithms = self.compression
        config.rpc.maxRequestPayloadSize = 16 << 20
        if let maxConcurrentStreams { config.http2.maxConcurrentStreams = maxConcurrentStreams }
        config.connection.maxAge = self.connectionPolicy.maxAge
        config.connection.maxGraceTime = self.connectionPolicy.maxGraceTime
        config.connection.keepalive.clientBehavior.allowWithoutCalls = self.connectionPolicy.allowPingsWithoutCalls
        config.connection.keepalive.clientBehavior.minPingIntervalWithoutCalls = self.connectionPolicy.minPingInterval
        config.channelDebuggingCallbacks.onAcceptTCPConnection = { [controls] channel in
            controls.accepted(channel)
            return channel.eventLoop.makeSucceededVoidFuture()
        }
        let security: HTTP2ServerTransport.Posix.TransportSecurity
        if let tls = self.tls {
            security = .tls(
                certificateChain: [.file(path: tls.certificateChainPath, format: .pem)],
                privateKey: .file(path: tls.privateKeyPath, format: .pem)
            ) { config in
                if let ca = tls.clientCAPath {
                    config.clientCertificateVerification = .noHostnameVerification
                    config.trustRoots = .certificates([.file(path: ca, format: .pem)])
                }
            }
        } else {
            security = .plaintext
        }
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: self.host, port: port),
            transportSecurity: security,
            config: config
        )
        let services: [any RegistrableRPCService] =
            [
                EchoService(controls: self.controls), self.health, TestService(),
                SpeechToTextService(), LanguageService(), SummaryService(),
            ] + self.extraServices
        let server = GRPCServer(
            transport: transport,
            services: services,
            interceptors: [PendingFailureInterceptor(controls: self.controls)]
                + (self.tracer.map { [ServerTracingInterceptor(tracer: $0)] } ?? [])
        )
        let task = Task { try await server.serve() }
        let address: GRPCNIOTransportCore.SocketAddress
        do {
            address = try await transport.listeningAddress
        } catch {
            // The serve task's error says why (a port in use, say); the address's only says that
            // there is none.
            task.cancel()
            if case .failure(let cause) = await task.result { throw cause }
            throw error
        }
        self.state.withLockedValue { state in
            state.port = address.ipv4?.port ?? port
            state.running = Running(task: task, server: server)
        }
    }

    /// Stops at once: every open connection is dropped (TCP close, no GOAWAY first), then the
    /// listener closes. Calls in flight fail on the client with UNAVAILABLE.
    public func stop() async {
        guard
            let running = self.state.withLockedValue({ state -> Running? in
                defer { state.running = nil }
                return state.running
            })
        else { return }
        // Drop the connections first, so that clients see a crash rather than a GOAWAY; then stop
        // listening (the server task is not cancelled: NIO's stream writers must be finished, not
        // dropped), and drop whatever connected in between.
        await self.controls.closeConnections()
        running.server.beginGracefulShutdown()
        await self.controls.closeConnections()
        await Self.finish(running.task)
    }

    /// Stops gracefully: GOAWAY, in-flight calls finish, then the listener closes.
    public func shutdownGracefully() async {
        guard
            let running = self.state.withLockedValue({ state -> Running? in
                defer { state.running = nil }
                return state.running
            })
        else { return }
        running.server.beginGracefulShutdown()
        await Self.finish(running.task)
    }

    /// Waits for the server task, cancelling it if it has not ended within five seconds.
    private static func finish(_ task: Task<Void, any Error>) async {
        let watchdog = Task {
            try await Task.sleep(for: .seconds(5))
            print("DemoServer: the server had not stopped 5 s after its shutdown began; cancelling it")
            task.cancel()
        }
        _ = await task.result
        watchdog.cancel()
    }

    /// ``stop()``, then ``start()`` on the same port.
    public func restart() async throws {
        await self.stop()
        try await self.start()
    }
}

extension DemoServer {
    /// State shared with the services: behaviour, counters, open connections.
    final class Controls: Sendable {
        private let state = NIOLockedValueBox(State())

        private struct State {
            var behaviour = Behaviour()
            var peers: Set<String> = []
            var cancelledRPCs = 0
            var requestCount = 0
            var lastRequestMetadata: Metadata = [:]
            var pendingFailures: (count: Int, failure: Behaviour.Failure?) = (0, nil)
            var pendingCorruptions = 0
            var connections: [ObjectIdentifier: any Channel] = [:]
        }

        var behaviour: Behaviour {
            get { self.state.withLockedValue { $0.behaviour } }
            set { self.state.withLockedValue { $0.behaviour = newValue } }
        }

        var peers: Set<String> { self.state.withLockedValue { $0.peers } }
        var cancelledRPCs: Int { self.state.withLockedValue { $0.cancelledRPCs } }
        var requestCount: Int { self.state.withLockedValue { $0.requestCount } }
        var lastRequestMetadata: Metadata { self.state.withLockedValue { $0.lastRequestMetadata } }

        func reset() {
            self.state.withLockedValue { state in
                state.peers = []
                state.cancelledRPCs = 0
                state.requestCount = 0
            }
        }

        func corruptNext(_ count: Int) {
            self.state.withLockedValue { $0.pendingCorruptions = count }
        }

        /// `message`, or a wrong one while corruptions are pending.
        func reply(to message: [UInt8]) -> [UInt8] {
            let corrupt = self.state.withLockedValue { state -> Bool in
                guard state.pendingCorruptions > 0 else { return false }
                state.pendingCorruptions -= 1
                return true
            }
            return corrupt ? message.reversed() + [0xFF] : message
        }

        /// An RPC ended because the client cancelled it.
        func recordCancelled() {
            self.state.withLockedValue { $0.cancelledRPCs += 1 }
        }

        func failNext(_ count: Int, with failure: Behaviour.Failure) {
            self.state.withLockedValue { $0.pendingFailures = (count, failure) }
        }

        /// One of the pending failures (``failNextCalls(_:with:)``), if any is left.
        func takePendingFailure() -> Behaviour.Failure? {
            self.state.withLockedValue { state in
                guard state.pendingFailures.count > 0 else { return nil }
                state.pendingFailures.count -= 1
                return state.pendingFailures.failure
            }
        }

        func accepted(_ channel: any Channel) {
            let id = ObjectIdentifier(channel)
            let peer = channel.remoteAddress.map { "\($0.ipAddress ?? "?"):\($0.port ?? 0)" } ?? "unknown"
            self.state.withLockedValue { state in
                state.peers.insert(peer)
                state.connections[id] = channel
            }
            channel.closeFuture.whenComplete { [weak self] _ in
                self?.state.withLockedValue { _ = $0.connections.removeValue(forKey: id) }
            }
        }

        func closeConnections() async {
            let connections = self.state.withLockedValue { state in
                defer { state.connections = [:] }
                return Array(state.connections.values)
            }
            for connection in connections {
                try? await connection.close()
            }
        }

        /// Applies the server-wide behaviour and the call's own controls before it is answered.
        func prepare(_ metadata: Metadata, context: ServerContext) async throws {
            let (behaviour, pendingFailure) = self.state.withLockedValue { state in
                state.lastRequestMetadata = metadata
                state.requestCount += 1
                var pendingFailure: Behaviour.Failure?
                if state.pendingFailures.count > 0 {
                    state.pendingFailures.count -= 1
                    pendingFailure = state.pendingFailures.failure
                }
                return (state.behaviour, pendingFailure)
            }
            if let pendingFailure {
                throw RPCError(code: pendingFailure.code, message: pendingFailure.message)
            }
            var delay = behaviour.delay
            if let ms = metadata[stringValues: "echo-delay-ms"].first(where: { _ in true }).flatMap({ Int($0) }) {
                delay += .milliseconds(ms)
            }
            if delay > .zero {
                let delay = delay
                // The wait ends early when the client cancels (RST_STREAM, deadline): seen
                // either by the RPC's cancellation handle or as the handler task's cancellation,
                // whichever comes first.
                let cancelled = await withTaskGroup(of: Bool.self) { group in
                    group.addTask { (try? await Task.sleep(for: delay)) == nil }
                    group.addTask {
                        _ = try? await context.cancellation.cancelled
                        return true
                    }
                    defer { group.cancelAll() }
                    return await group.next() ?? true
                }
                if cancelled {
                    self.state.withLockedValue { $0.cancelledRPCs += 1 }
                    throw RPCError(code: .cancelled, message: "the client cancelled the call")
                }
            }
            if let failure = behaviour.failure {
                throw RPCError(code: failure.code, message: failure.message)
            }
            if let raw = metadata[stringValues: "echo-status"].first(where: { _ in true }).flatMap({ Int($0) }),
                let status = Status.Code(rawValue: raw), let code = RPCError.Code(status)
            {
                let message = metadata[stringValues: "echo-message"].first(where: { _ in true }) ?? ""
                throw RPCError(code: code, message: message, metadata: EchoService.echoed(metadata))
            }
        }
    }
}

/// Applies ``DemoServer/failNextCalls(_:with:)`` to the demo services (`demo.*`), as the echo
/// service applies it to itself; health checks are never failed this way.
private struct PendingFailureInterceptor: ServerInterceptor {
    let controls: DemoServer.Controls

    func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        if context.descriptor.service.fullyQualifiedService.hasPrefix("demo."),
            let failure = self.controls.takePendingFailure()
        {
            throw RPCError(code: failure.code, message: failure.message)
        }
        return try await next(request, context)
    }
}
