private import NIOConcurrencyHelpers
internal import NIOCore
internal import NIOPosix

/// A TCP proxy on loopback that forwards to a target and can misbehave on command, for fault
/// tests: it can stop forwarding while keeping every connection open (a black hole), and drop
/// every connection at once. With backends added (``addBackend(port:)``), it spreads new
/// connections over them in turn, as an L4 load balancer does.
///
/// ```swift
/// let proxy = TCPProxy(target: server.port)
/// try await proxy.start()
/// // connect to proxy.target …
/// proxy.mode = .blackHole   // bytes in either direction now vanish
/// ```
public final class TCPProxy: Sendable {
    /// How it treats traffic.
    public enum Mode: Sendable, Hashable {
        /// Forwards both ways.
        case forward
        /// Accepts connections and reads, but forwards nothing either way (a stalled peer).
        case blackHole
        /// Accepts each new connection and closes it at once, before a byte of HTTP/2 (a peer
        /// that crashes or refuses on every connection).
        case reset
    }

    /// The port it forwards to on `targetHost`.
    public let targetPort: Int
    public let targetHost: String
    private let state: NIOLockedValueBox<State>
    private let group: MultiThreadedEventLoopGroup

    private struct State {
        var mode = Mode.forward
        var port = 0
        var listener: (any Channel)?
        var connections: [ObjectIdentifier: any Channel] = [:]
        var acceptTimes: [ContinuousClock.Instant] = []
        /// Client connections accepted and not closed yet.
        var openClients = 0
        var backends: [Int]
        var nextBackend = 0
    }

    public init(targetHost: String = "127.0.0.1", targetPort: Int) {
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.state = NIOLockedValueBox(State(backends: [targetPort]))
        self.group = MultiThreadedEventLoopGroup.singleton
    }

    /// What it does with traffic from now on (also for connections already open).
    public var mode: Mode {
        get { self.state.withLockedValue { $0.mode } }
        set { self.state.withLockedValue { $0.mode = newValue } }
    }

    /// The port it listens on (after ``start()``).
    public var port: Int { self.state.withLockedValue { $0.port } }

    /// `127.0.0.1:port`, as a client target.
    public var target: String { "127.0.0.1:\(self.port)" }

    /// Client connections it has accepted.
    public var acceptedConnections: Int { self.state.withLockedValue { $0.acceptTimes.count } }

    /// Client connections open now (accepted, not closed by either side).
    public var openConnections: Int { self.state.withLockedValue { $0.openClients } }

    /// When it accepted each client connection, in order.
    public var acceptTimes: [ContinuousClock.Instant] { self.state.withLockedValue { $0.acceptTimes } }

    /// Adds a backend on `targetHost`: new connections go to the backends in turn; connections
    /// already open stay where they are.
    public func addBackend(port: Int) {
        self.state.withLockedValue { $0.backends.append(port) }
    }

    /// Starts listening on a free loopback port (or the one it had before).
    public func start() async throws {
        let port = self.state.withLockedValue { $0.port }
        let listener = try await ServerBootstrap(group: self.group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: true)
            .childChannelInitializer { [self] inbound in
                self.accepted(inbound)
            }
            .bind(host: "127.0.0.1", port: port)
            .get()
        self.state.withLockedValue { state in
            state.listener = listener
            state.port = listener.localAddress?.port ?? port
        }
    }

    /// Closes the listener and every connection.
    public func stop() async {
        let (listener, connections) = self.state.withLockedValue { state in
            defer {
                state.listener = nil
                state.connections = [:]
            }
            return (state.listener, Array(state.connections.values))
        }
        try? await listener?.close()
        for connection in connections { try? await connection.close() }
    }

    /// Drops every open connection (RST-like close), keeping the listener.
    public func dropConnections() async {
        let connections = self.state.withLockedValue { state in
            defer { state.connections = [:] }
            return Array(state.connections.values)
        }
        for connection in connections { try? await connection.close() }
    }

    private func track(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        self.state.withLockedValue { $0.connections[id] = channel }
        channel.closeFuture.whenComplete { [weak self] _ in
            self?.state.withLockedValue { _ = $0.connections.removeValue(forKey: id) }
        }
    }

    private func accepted(_ inbound: any Channel) -> EventLoopFuture<Void> {
        let (mode, backend) = self.state.withLockedValue { state in
            state.acceptTimes.append(.now)
            let backend = state.backends[state.nextBackend % state.backends.count]
            state.nextBackend += 1
            return (state.mode, backend)
        }
        if mode == .reset {
            return inbound.close()
        }
        self.track(inbound)
        self.state.withLockedValue { $0.openClients += 1 }
        inbound.closeFuture.whenComplete { [weak self] _ in
            self?.state.withLockedValue { $0.openClients -= 1 }
        }
        let forwarding: @Sendable () -> Bool = { [weak self] in self?.mode == .forward }
        return ClientBootstrap(group: inbound.eventLoop)
            .connect(host: self.targetHost, port: backend)
            .flatMap { outbound in
                self.track(outbound)
                return inbound.eventLoop.makeCompletedFuture {
                    let (a, b) = GlueHandler.matchedPair(forwarding: forwarding)
                    try inbound.pipeline.syncOperations.addHandler(a)
                    try outbound.pipeline.syncOperations.addHandler(b)
                }
            }
            .flatMapError { error in
                inbound.close().flatMapThrowing { throw error }
            }
    }
}

/// Joins two channels: what one reads, the other writes (the swift-nio-examples glue).
private final class GlueHandler {
    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    private let forwarding: @Sendable () -> Bool

    private init(forwarding: @escaping @Sendable () -> Bool) {
        self.forwarding = forwarding
    }

    static func matchedPair(forwarding: @escaping @Sendable () -> Bool) -> (GlueHandler, GlueHandler) {
        let first = GlueHandler(forwarding: forwarding)
        let second = GlueHandler(forwarding: forwarding)
        first.partner = second
        second.partner = first
        return (first, second)
    }

    private func partnerWrite(_ data: NIOAny) {
        self.context?.write(data, promise: nil)
    }

    private func partnerFlush() {
        self.context?.flush()
    }

    private func partnerWriteEOF() {
        self.context?.close(mode: .output, promise: nil)
    }

    private func partnerCloseFull() {
        self.context?.close(promise: nil)
    }

    private func partnerBecameWritable() {
        if self.pendingRead {
            self.pendingRead = false
            self.context?.read()
        }
    }

    private var partnerWritable: Bool {
        self.context?.channel.isWritable ?? false
    }
}

extension GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        self.partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard self.forwarding() else { return }  // black hole: the bytes vanish
        self.partner?.partnerWrite(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.partner?.partnerCloseFull()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            self.partner?.partnerWriteEOF()
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.partner?.partnerCloseFull()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.partner?.partnerBecameWritable()
        }
    }

    func read(context: ChannelHandlerContext) {
        if let partner = self.partner, partner.partnerWritable {
            context.read()
        } else {
            self.pendingRead = true
        }
    }
}
