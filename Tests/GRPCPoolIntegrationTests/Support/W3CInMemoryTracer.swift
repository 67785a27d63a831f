import InMemoryTracing
import Tracing
import W3CTraceContext

/// swift-distributed-tracing's in-memory tracer with W3C's identifiers (32 and 16 hex digits)
/// and W3C's propagation, as swift-otel's tracer propagates: `traceparent` out, and in, parsed
/// by swift-w3c-trace-context.
struct W3CInMemoryTracer: Tracer {
    let recorder = InMemoryTracer(
        idGenerator: .init(
            nextTraceID: { TraceID.random().description },
            nextSpanID: { SpanID.random().description }
        )
    )

    /// The spans ended so far.
    var finishedSpans: [FinishedInMemorySpan] { self.recorder.finishedSpans }

    /// `traceparent` for a span context: version 00, sampled.
    static func traceparent(_ span: InMemorySpanContext) -> String {
        "00-\(span.traceID)-\(span.spanID)-01"
    }

    func startSpan<Instant: TracerInstant>(
        _ operationName: String,
        context: @autoclosure () -> ServiceContext,
        ofKind kind: SpanKind,
        at instant: @autoclosure () -> Instant,
        function: String,
        file fileID: String,
        line: UInt
    ) -> InMemorySpan {
        self.recorder.startSpan(
            operationName,
            context: context(),
            ofKind: kind,
            at: instant(),
            function: function,
            file: fileID,
            line: line
        )
    }

    func activeSpan(identifiedBy context: ServiceContext) -> InMemorySpan? {
        self.recorder.activeSpan(identifiedBy: context)
    }

    func forceFlush() {}

    func inject<Carrier, Inject: Injector>(
        _ context: ServiceContext,
        into carrier: inout Carrier,
        using injector: Inject
    ) where Inject.Carrier == Carrier {
        guard let span = context.inMemorySpanContext else { return }
        injector.inject(Self.traceparent(span), forKey: "traceparent", into: &carrier)
    }

    func extract<Carrier, Extract: Extractor>(
        _ carrier: Carrier,
        into context: inout ServiceContext,
        using extractor: Extract
    ) where Extract.Carrier == Carrier {
        guard let value = extractor.extract(key: "traceparent", from: carrier),
            let parsed = try? TraceContext(traceParentHeaderValue: value)
        else { return }
        context.inMemorySpanContext = InMemorySpanContext(
            traceID: parsed.traceID.description,
            spanID: parsed.spanID.description,
            parentSpanID: nil
        )
    }
}
