import GRPCCore
import GRPCPoolCoreBridge
import Testing

@Suite("A server's refusal of a compression algorithm")
struct CompressionRefusalsTests {
    /// Each stack's answer to a gzipped request it cannot decompress.
    @Test(
        "UNIMPLEMENTED about the encoding, from any stack, is a refusal of gzip",
        arguments: [
            "gzip compression is not supported; supported algorithms are listed in grpc-accept-encoding",  // grpc-swift
            "grpc: Decompressor is not installed for grpc-encoding \"gzip\"",  // grpc-go
            "Can't find decompressor for gzip",  // grpc-java
            "Compression algorithm 'gzip' is disabled.",  // the C core
        ]
    )
    func refusal(message: String) {
        let refusals = CompressionRefusals()
        #expect(!refusals.contains(.gzip))
        let status = CallStatus(code: .unimplemented, message: message, trailingMetadata: [:])
        #expect(refusals.learn(from: status, requested: .gzip))
        #expect(refusals.contains(.gzip))
        #expect(!refusals.contains(.deflate))
    }

    @Test("An unknown method, another code, or a call that asked for no algorithm is not a refusal")
    func notRefusals() {
        let refusals = CompressionRefusals()
        let unknownMethod = CallStatus(
            code: .unimplemented,
            message: "Method not found: bench.Echo/Nope",
            trailingMetadata: [:]
        )
        #expect(!refusals.learn(from: unknownMethod, requested: .gzip))
        let unavailable = CallStatus(
            code: .unavailable,
            message: "gzip compression is not supported",
            trailingMetadata: [:]
        )
        #expect(!refusals.learn(from: unavailable, requested: .gzip))
        let refused = CallStatus(
            code: .unimplemented,
            message: "gzip compression is not supported",
            trailingMetadata: [:]
        )
        #expect(!refusals.learn(from: refused, requested: nil))
        #expect(!refusals.learn(from: refused, requested: ChannelOptions.Compression.none))
        #expect(!refusals.contains(.gzip))
    }

    @Test("A refused stream reaches its caller as UNAVAILABLE, which says why")
    func retryable() {
        let refused = CallStatus(
            code: .unimplemented,
            message: "gzip compression is not supported",
            trailingMetadata: [:]
        )
        let status = CompressionRefusals.retryable(refused, requested: .gzip)
        #expect(status.code == .unavailable)
        #expect(status.message.contains("does not accept gzip requests (gzip compression is not supported)"))
    }

    @Test(
        "A call whose request stays open asks for gzip only once the server accepted it (a message or OK); a refusal ends every asking"
    )
    func acceptance() {
        let refusals = CompressionRefusals()
        let options = CoreCallOptions(compression: .gzip, compressionThreshold: 2048)
        #expect(options.requestedCompression(refusals: refusals) == .gzip)
        #expect(options.requestedCompression(unaryRequestSize: 4096, refusals: refusals) == .gzip)
        #expect(options.requestedCompression(unaryRequestSize: 32, refusals: refusals) == nil)
        #expect(options.requestedCompression(requestStaysOpen: true, refusals: refusals) == nil)

        // A call that asked for nothing proves nothing; one that asked for gzip and ended OK does.
        let ok = CallStatus(code: .ok, message: "", trailingMetadata: [:])
        #expect(!refusals.learn(from: ok, requested: nil))
        #expect(!refusals.accepts(.gzip))
        #expect(!refusals.learn(from: ok, requested: .gzip))
        #expect(refusals.accepts(.gzip))
        #expect(!refusals.accepts(.deflate))
        #expect(options.requestedCompression(requestStaysOpen: true, refusals: refusals) == .gzip)

        let streamed = CompressionRefusals()
        streamed.learnAccepted(.gzip)
        #expect(options.requestedCompression(requestStaysOpen: true, refusals: streamed) == .gzip)
        let refused = CallStatus(
            code: .unimplemented,
            message: "gzip compression is not supported",
            trailingMetadata: [:]
        )
        #expect(streamed.learn(from: refused, requested: .gzip))
        #expect(options.requestedCompression(requestStaysOpen: true, refusals: streamed) == nil)
        #expect(options.requestedCompression(refusals: streamed) == nil)
    }
}
