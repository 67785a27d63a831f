public import GRPCCore

/// `bench.Echo`: echoes raw bytes, with per-call controls in the request metadata.
///
/// | method | behaviour |
/// |---|---|
/// | `Unary` | returns the request |
/// | `ServerStream` | returns the request `echo-repeat` times (default 1) |
/// | `ClientStream` | returns every request message concatenated |
/// | `Stream` | returns each request message as it arrives; first `echo-greeting`'s value, when set, before it reads any; ends (OK) after `echo-limit` messages, when set, whether or not the request has ended |
///
/// Request metadata read by every method:
/// - `echo-delay-ms`: wait this long before answering (the wait ends early, and is counted in
///   ``DemoServer/cancelledRPCs``, when the client cancels);
/// - `echo-status` and `echo-message`: fail with this status code and message;
/// - any key starting with `x-` is sent back in the initial and the trailing metadata;
/// - `echo-keys`: these keys (comma-separated) are sent back as `echoed-<key>`, so that a test
///   reads what the server received.
///
/// The server-wide ``DemoServer/Behaviour`` (delay, failure) applies on top.
public struct EchoService: RegistrableRPCService {
    /// The service's fully qualified name.
    public static let serviceName = "bench.Echo"

    /// The method descriptors, for clients.
    public enum Method {
        public static let unary = MethodDescriptor(fullyQualifiedService: serviceName, method: "Unary")
        public static let serverStream = MethodDescriptor(fullyQualifiedService: serviceName, method: "ServerStream")
        public static let clientStream = MethodDescriptor(fullyQualifiedService: serviceName, method: "ClientStream")
        public static let stream = MethodDescriptor(fullyQualifiedService: serviceName, method: "Stream")
    }

    let controls: DemoServer.Controls

    init(controls: DemoServer.Controls) {
        self.controls = controls
    }

    public func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let controls = self.controls
        router.registerHandler(
            forMethod: Method.unary,
            deserializer: RawBytesDeserializer(),
            serializer: RawBytesSerializer()
        ) { request, context in
            try await controls.prepare(request.metadata, context: context)
            let message = try await request.messages.first { _ in true } ?? []
            return StreamingServerResponse(metadata: Self.echoed(request.metadata)) { writer in
                try await writer.write(controls.reply(to: message))
                return Self.echoed(request.metadata)
            }
        }
        router.registerHandler(
            forMethod: Method.serverStream,
            deserializer: RawBytesDeserializer(),
            serializer: RawBytesSerializer()
        ) { request, context in
            try await controls.prepare(request.metadata, context: context)
            let message = try await request.messages.first { _ in true } ?? []
            let repeats =
                request.metadata[stringValues: "echo-repeat"].first(where: { _ in true }).flatMap { Int($0) } ?? 1
            return StreamingServerResponse(metadata: Self.echoed(request.metadata)) { writer in
                for _ in 0..<repeats { try await writer.write(message) }
                return Self.echoed(request.metadata)
            }
        }
        router.registerHandler(
            forMethod: Method.clientStream,
            deserializer: RawBytesDeserializer(),
            serializer: RawBytesSerializer()
        ) { request, context in
            try await controls.prepare(request.metadata, context: context)
            var all: [UInt8] = []
            for try await message in request.messages { all += message }
            return StreamingServerResponse(metadata: Self.echoed(request.metadata)) { [all] writer in
                try await writer.write(all)
                return Self.echoed(request.metadata)
            }
        }
        router.registerHandler(
            forMethod: Method.stream,
            deserializer: RawBytesDeserializer(),
            serializer: RawBytesSerializer()
        ) { request, context in
            try await controls.prepare(request.metadata, context: context)
            // The server speaks first: a client may wait for the greeting before it writes.
            let greeting = request.metadata[stringValues: "echo-greeting"].first(where: { _ in true })
            let limit = request.metadata[stringValues: "echo-limit"].first(where: { _ in true }).flatMap { Int($0) }
            return StreamingServerResponse(metadata: Self.echoed(request.metadata)) { writer in
                if let greeting { try await writer.write(Array(greeting.utf8)) }
                var echoed = 0
                do {
                    for try await message in request.messages {
                        try await writer.write(message)
                        echoed += 1
                        // The server ends the RPC while the client's request is still open.
                        if echoed == limit { break }
                    }
                } catch {
                    if context.cancellation.isCancelled { controls.recordCancelled() }
                    throw error
                }
                return Self.echoed(request.metadata)
            }
        }
    }

    /// The request's `x-` metadata, and its `echo-keys` as `echoed-<key>`, to send back.
    static func echoed(_ metadata: Metadata) -> Metadata {
        var echoed = Metadata(metadata.filter { $0.key.hasPrefix("x-") })
        for keys in metadata[stringValues: "echo-keys"] {
            for key in keys.split(separator: ",") {
                echoed.addString(metadata[stringValues: String(key)].first { _ in true } ?? "", forKey: "echoed-\(key)")
            }
        }
        return echoed
    }
}
