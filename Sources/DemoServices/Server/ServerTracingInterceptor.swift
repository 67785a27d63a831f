public import GRPCCore
public import Tracing

/// Makes each RPC the server handles a server span of `tracer`, joined to the trace whose
/// context the client sent in the request metadata (extracted the way `tracer` propagates it),
/// under OpenTelemetry's RPC conventions: what a service behind the pool runs so that its spans
/// and the pool's meet in one trace.
public struct ServerTracingInterceptor: ServerInterceptor {
    let tracer: any Tracer

    public init(tracer: any Tracer) {
        self.tracer = tracer
    }

    public func intercept<Input: Sendable, Output: Sendable>(
        request: StreamingServerRequest<Input>,
        context: ServerContext,
        next: @Sendable (StreamingServerRequest<Input>, ServerContext) async throws -> StreamingServerResponse<Output>
    ) async throws -> StreamingServerResponse<Output> {
        var parent = ServiceContext.current ?? .topLevel
        self.tracer.extract(request.metadata, into: &parent, using: MetadataExtractor())
        let descriptor = context.descriptor
        let span = self.tracer.startSpan(
            "\(descriptor.service.fullyQualifiedService)/\(descriptor.method)",
            context: parent,
            ofKind: .server
        )
        span.updateAttributes { attributes in
            attributes["rpc.system"] = "grpc"
            attributes["rpc.service"] = descriptor.service.fullyQualifiedService
            attributes["rpc.method"] = descriptor.method
        }
        do {
            var response = try await ServiceContext.withValue(span.context) {
                try await next(request, context)
            }
            // The span ends with the RPC: once the response's status is written.
            switch response.accepted {
            case .success(var contents):
                let producer = contents.producer
                contents.producer = { writer in
                    do {
                        let metadata = try await producer(writer)
                        span.attributes["rpc.grpc.status_code"] = 0
                        span.end()
                        return metadata
                    } catch {
                        Self.end(span, error: error)
                        throw error
                    }
                }
                response.accepted = .success(contents)
            case .failure(let error):
                Self.end(span, error: error)
            }
            return response
        } catch {
            Self.end(span, error: error)
            throw error
        }
    }

    private static func end(_ span: any Span, error: any Error) {
        let code = (error as? RPCError)?.code ?? (error as? any RPCErrorConvertible)?.rpcErrorCode ?? .unknown
        span.attributes["rpc.grpc.status_code"] = Int(Status.Code(code).rawValue)
        span.setStatus(SpanStatus(code: .error))
        span.end()
    }
}

/// Reads a tracer's propagation fields from request metadata (ASCII values).
struct MetadataExtractor: Extractor {
    func extract(key: String, from carrier: Metadata) -> String? {
        carrier[stringValues: key].first(where: { _ in true })
    }
}
