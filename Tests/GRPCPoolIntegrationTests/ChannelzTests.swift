import DemoServices
import Foundation
import GRPCCore
import GRPCPool
import Testing

extension IsolatedTests {
    /// The pool's channelz service, read the way operators read it: grpcio-channelz's client.
    ///
    /// Alone: a socket counts only the streams that reached it, so the counts match the pool's
    /// only when each connection's first attempt connects; beside the parallel phase, an attempt
    /// to the in-process server can time out and its health checks fail without a socket.
    @Suite("channelz")
    struct ChannelzTests {
        @Test(
            "grpcio-channelz's client reads a channel per connection, each socket's streams_started the connection's calls plus the pool's own health checks",
            arguments: Stack.allCases
        )
        func channelPerConnection(_ stack: Stack) async throws {
            let channelz = DemoServer(services: [ChannelzService()])
            try await channelz.start()
            defer { Task { await channelz.stop() } }
            try await withBackend(stack) { server in
                // Health checks by RPC (grpc.health.v1, the whole server), every 2 s.
                let config = testConfig([server.target], poolSize: 3) {
                    $0.healthCheck.serviceName = ""
                    $0.healthCheck.interval = .seconds(2)
                }
                try await withPoolManager(["echo": config]) { manager in
                    let client = try manager.client(for: "echo")
                    for _ in 0..<30 { _ = try await client.echo([1, 2, 3], timeout: .seconds(10)) }
                    // A health check may start while the tree is read: read until the pool's counts
                    // are the same before and after.
                    var connections: [ConnectionMetrics] = []
                    var tree: [Channel] = []
                    let stable = try await poll(every: .milliseconds(100), timeLimit: .seconds(30)) {
                        let before = try #require(manager.metrics()["echo"]).connections
                        tree = try await Self.read(channelz.target)
                        connections = try #require(manager.metrics()["echo"]).connections
                        return before.map { [$0.totalRequests, $0.ownRPCs] }
                            == connections.map { [$0.totalRequests, $0.ownRPCs] }
                    }
                    #expect(stable)
                    let ids = connections.compactMap(\.channelzID)
                    #expect(ids.count == 3, "\(connections)")
                    let channels = tree.filter { ids.contains($0.id) }
                    #expect(channels.count == 3, "\(tree)")
                    for connection in connections {
                        let channel = try #require(channels.first { $0.id == connection.channelzID })
                        #expect(channel.state == "READY")
                        #expect(connection.ownRPCs >= 1, "\(connection)")
                        #expect(channel.callsStarted == connection.totalRequests + connection.ownRPCs)
                        let sockets = channel.subchannels.flatMap(\.sockets)
                        #expect(sockets.count == 1, "\(channel)")
                        #expect(
                            sockets.first?.streamsStarted == connection.totalRequests + connection.ownRPCs,
                            "connection \(connection.index): \(channel); pool \(connection.totalRequests) + \(connection.ownRPCs)"
                        )
                    }
                    #expect(connections.reduce(0) { $0 + $1.totalRequests } == 30)
                }
            }
        }

        /// One top channel as grpcio-channelz's client read it (`Scripts/channelz_client.py`).
        struct Channel: Decodable, CustomStringConvertible {
            struct Subchannel: Decodable {
                var id: Int
                var state: String
                var sockets: [Socket]
            }

            struct Socket: Decodable {
                var id: Int
                var streamsStarted: Int
                var streamsSucceeded: Int
                var keepAlivesSent: Int
            }

            var id: Int
            var target: String
            var state: String
            var callsStarted: Int
            var subchannels: [Subchannel]

            var description: String {
                "channel \(self.id) \(self.target) \(self.state) calls \(self.callsStarted): "
                    + self.subchannels.map { "\($0.state) \($0.sockets.map { "streams \($0.streamsStarted)" })" }
                    .joined(separator: ", ")
            }
        }

        /// The channelz tree of the process whose channelz service listens at `target`.
        static func read(_ target: String) async throws -> [Channel] {
            let process = try PythonScript.start("channelz_client.py", [target], errors: .capture)
            let output = await process.output(timeLimit: .seconds(30))
            let line = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") }, "\(output)")
            struct Tree: Decodable { var channels: [Channel] }
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            return try decoder.decode(Tree.self, from: Data(line.utf8)).channels
        }
    }
}
