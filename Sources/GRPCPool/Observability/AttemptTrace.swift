internal import GRPCCore
internal import Tracing

/// One attempt's client span, under OpenTelemetry's RPC conventions and with the pool's own
/// attributes, and the context the attempt sends in its metadata so that the server's span joins
/// the same trace.
///
/// The tracer is the one swift-distributed-tracing makes active (`withTracer`, or the one
/// bootstrapped); the parent is the caller's `ServiceContext`. With no tracer (the no-op
/// instrument), no span is made and each attempt pays the one check in ``activeTracer``. A
/// class: a call that is not traced carries one empty reference for it.
final class AttemptTrace: Sendable {
    private let tracer: any Tracer
    private let span: any Span

    /// What an attempt's span describes.
    struct Attempt {
        /// The method's path, `/package.Service/Method`.
        var path: String
        var service: ServiceID
        var connection: Int
        /// 1 for the first attempt, 2 for the first retry, …
        var number: Int
        /// The address the connection goes to (a core target), and the name it was found by, if any.
        var address: String
        var authority: String?
        /// How long the attempt waited for a connection, and why.
        var delay: CallDispatcher.Delay?
    }

    /// The active tracer, or `nil` when there is none: the check every attempt pays. The
    /// instrument is read first (no tracer can be active while it is the no-op one): looking
    /// the tracer up in it costs allocations.
    static var activeTracer: (any Tracer)? {
        if InstrumentationSystem.instrument is NoOpInstrument { return nil }
        let tracer = InstrumentationSystem.tracer
        return tracer is NoOpTracer ? nil : tracer
    }

    /// Starts the span of `attempt` on `tracer`, as a child of the caller's context.
    init(_ attempt: Attempt, tracer: any Tracer) {
        let name = attempt.path.hasPrefix("/") ? String(attempt.path.dropFirst()) : attempt.path
        let span = tracer.startSpan(name, context: ServiceContext.current ?? .topLevel, ofKind: .client)
        span.updateAttributes { attributes in
            attributes["rpc.system"] = "grpc"
            if let slash = name.lastIndex(of: "/") {
                attributes["rpc.service"] = String(name[..<slash])
                attributes["rpc.method"] = String(name[name.index(after: slash)...])
            }
            if let (host, port) = Self.server(address: attempt.address, authority: attempt.authority) {
                attributes["server.address"] = host
                if let port { attributes["server.port"] = port }
            }
            attributes["grpc.pool.service"] = attempt.service.rawValue
            attributes["grpc.pool.connection"] = attempt.connection
            attributes["grpc.pool.attempt"] = attempt.number
            attributes["grpc.pool.delay_ms"] = (attempt.delay?.duration ?? .zero).milliseconds
            if let delay = attempt.delay { attributes["grpc.pool.delay_type"] = delay.type }
        }
        self.tracer = tracer
        self.span = span
    }

    /// Puts the span's context into `metadata` the way the tracer propagates it (with swift-otel,
    /// W3C's `traceparent` and `tracestate`).
    func inject(into metadata: inout Metadata) {
        self.tracer.inject(self.span.context, into: &metadata, using: MetadataInjector())
    }

    /// Ends the span with the attempt's status: OK, or the error's code as an error status.
    func end(error: RPCError?) {
        let code = error.map { Status.Code($0.code) } ?? .ok
        self.span.attributes["rpc.grpc.status_code"] = code.rawValue
        if let error {
            self.span.setStatus(SpanStatus(code: .error, message: "\(code.name): \(error.message)"))
        }
        self.span.end()
    }

    /// `server.address` and `server.port`: the name the address was found by, when there is
    /// one, else the address itself (a Unix socket's path has no port).
    static func server(address: String, authority: String?) -> (host: String, port: Int?)? {
        if let authority, let (host, port) = ServiceTarget.hostAndPort(Substring(authority), defaultPort: 0) {
            return (host, port == 0 ? nil : port)
        }
        if address.hasPrefix("unix:") { return (String(address.dropFirst("unix:".count)), nil) }
        var text = Substring(address)
        for scheme in ["ipv4:", "ipv6:", "dns:///"] where text.hasPrefix(scheme) {
            text = text.dropFirst(scheme.count)
        }
        // A list of addresses (`ipv4:a,b`) names no one server.
        guard !text.contains(","), let (host, port) = ServiceTarget.hostAndPort(text, defaultPort: 0) else {
            return nil
        }
        return (host, port == 0 ? nil : port)
    }
}

/// Writes a tracer's propagation fields as ASCII metadata, replacing any earlier value (a
/// retry's span replaces the one before it).
struct MetadataInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout Metadata) {
        carrier.replaceOrAddString(value, forKey: key)
    }
}
