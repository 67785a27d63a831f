import DemoServices
import Foundation
import GRPCCore
import GRPCPool

/// The streaming rows: the pool's streams against grpc-swift-2's NIO client on the same server,
/// tuned, and the same streams through the package's core layer alone (no GRPCCore, no pool) as
/// the ceiling; their ratios (per message, against the pool's own unary call at the same
/// concurrency where a stream replaces calls).
extension BenchSession {
    func streamingRows() async throws {
        let (clients, small) = (self.clients, self.small)
        for level in [1, 16, 64] {
            let pool = try await self.measure("(a) pool stub", "bidi 10×32 B", concurrency: level) {
                try await clients.poolPingPong(small)
            }
            let nio = try await self.measure("(c) NIO client", "bidi 10×32 B", concurrency: level) {
                try await clients.nioPingPong(small)
            }
            let core = try await self.measure("(d) core stream", "bidi 10×32 B", concurrency: level) {
                try await clients.corePingPong(small)
            }
            self.ratios["bidi_msg_vs_core_msg_cpu_c\(level)"] = pool.cpuPerCall / core.cpuPerCall
            // Client CPU per message round trip (a stream is 10 of them).
            self.ratios["bidi_msg_vs_nio_msg_cpu_c\(level)"] = pool.cpuPerCall / nio.cpuPerCall
            if let unary = self.poolUnaryCPU[level] {
                self.ratios["bidi_msg_vs_pool_unary_cpu_c\(level)"] = pool.cpuPerCall / 10 / unary
            }
        }
        let messages = 10_000
        let down = try await self.measure("(a) pool stub", "server stream 10k×32 B", concurrency: 1) {
            try await clients.serverStream(clients.poolClient(), small, count: messages)
        }
        let downNIO = try await self.measure("(c) NIO client", "server stream 10k×32 B", concurrency: 1) {
            try await clients.serverStream(clients.nioClient(), small, count: messages)
        }
        let downCore = try await self.measure("(d) core stream", "server stream 10k×32 B", concurrency: 1) {
            try await clients.coreServerStream(small, count: messages)
        }
        self.ratios["server_stream_pool_vs_core_cpu"] = down.cpuPerCall / downCore.cpuPerCall
        self.ratios["server_stream_pool_vs_nio_msgs"] = down.qps / downNIO.qps
        self.ratios["server_stream_pool_vs_nio_cpu"] = down.cpuPerCall / downNIO.cpuPerCall
        let up = try await self.measure("(a) pool stub", "client stream 10k×32 B", concurrency: 1) {
            try await clients.clientStream(clients.poolClient(), small, count: messages)
        }
        let upNIO = try await self.measure("(c) NIO client", "client stream 10k×32 B", concurrency: 1) {
            try await clients.clientStream(clients.nioClient(), small, count: messages)
        }
        let upCore = try await self.measure("(d) core stream", "client stream 10k×32 B", concurrency: 1) {
            try await clients.coreClientStream(small, count: messages)
        }
        self.ratios["client_stream_pool_vs_core_cpu"] = up.cpuPerCall / upCore.cpuPerCall
        self.ratios["client_stream_pool_vs_nio_msgs"] = up.qps / upNIO.qps
        self.ratios["client_stream_pool_vs_nio_cpu"] = up.cpuPerCall / upNIO.cpuPerCall
        let mebibyte = [UInt8](repeating: 9, count: 1 << 20)
        let large = try await self.measure("(a) pool stub", "bidi 10×1 MiB", concurrency: 1) {
            try await clients.poolPingPong(mebibyte)
        }
        let largeNIO = try await self.measure("(c) NIO client", "bidi 10×1 MiB", concurrency: 1) {
            try await clients.nioPingPong(mebibyte)
        }
        let largeCore = try await self.measure("(d) core stream", "bidi 10×1 MiB", concurrency: 1) {
            try await clients.corePingPong(mebibyte)
        }
        self.ratios["bidi_1mib_pool_vs_nio_mbps"] = large.qps / largeNIO.qps
        self.ratios["bidi_1mib_pool_vs_core_mbps"] = large.qps / largeCore.qps
        self.say(
            String(
                format: "  1 MiB ping-pong: pool %.0f MB/s, NIO %.0f MB/s each way",
                large.qps * 10 * 1.048576,
                largeNIO.qps * 10 * 1.048576
            )
        )
    }
}

extension BenchClients {
    static let serverStream = MethodDescriptor(
        fullyQualifiedService: "bench.Echo",
        method: "ServerStream",
        type: .serverStreaming
    )
    static let clientStream = MethodDescriptor(
        fullyQualifiedService: "bench.Echo",
        method: "ClientStream",
        type: .clientStreaming
    )

    /// One call of an external run's streaming `workload` on `client` with the options of
    /// `settings`: 10,000 copies of `payload` down (server streaming) or up (client streaming).
    /// `retries` adds the retry policy, as for the NIO client's unary and bidi calls (the pool
    /// retries its streams itself).
    func streamCall<T: ClientTransport>(
        _ workload: Bench.TargetWorkload,
        _ client: GRPCClient<T>,
        _ payload: [UInt8],
        _ settings: BenchSettings,
        retries: Bool
    ) -> @Sendable () async throws -> Void {
        let options = settings.callOptions(retries: retries)
        if workload == .serverStream {
            return { try await self.serverStream(client, payload, count: 10_000, options: options) }
        }
        return { try await self.clientStream(client, payload, count: 10_000, options: options) }
    }

    /// One server-streaming call: `payload` up, `count` copies of it down.
    func serverStream<T: ClientTransport>(
        _ client: GRPCClient<T>,
        _ payload: [UInt8],
        count: Int,
        options: CallOptions = .defaults
    ) async throws {
        let received = try await client.serverStreaming(
            request: ClientRequest(message: payload, metadata: ["echo-repeat": "\(count)"]),
            descriptor: Self.serverStream,
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: options
        ) { response in
            var received = 0
            for try await _ in response.messages { received += 1 }
            return received
        }
        guard received == count else { throw RPCError(code: .dataLoss, message: "\(received) of \(count) messages") }
    }

    /// One client-streaming call: `count` copies of `payload` up, their concatenation down.
    func clientStream<T: ClientTransport>(
        _ client: GRPCClient<T>,
        _ payload: [UInt8],
        count: Int,
        options: CallOptions = .defaults
    ) async throws {
        let reply = try await client.clientStreaming(
            request: StreamingClientRequest(of: [UInt8].self) { writer in
                for _ in 0..<count { try await writer.write(payload) }
            },
            descriptor: Self.clientStream,
            serializer: RawBytesSerializer(),
            deserializer: RawBytesDeserializer(),
            options: options
        ) { try $0.message }
        guard reply.count == count * payload.count else { throw RPCError(code: .dataLoss, message: "short reply") }
    }
}
