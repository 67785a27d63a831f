import ArgumentParser
import Foundation
import GRPCCore
import GRPCPool
import SwiftProtobuf

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Prints the channelz tree of a running process: the pool's view joined with the core's
/// (an app's `/debug/channelz`), or the standard channelz service's channels, subchannels and
/// sockets; with the reason for each connection that is down.
struct ChannelzCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "channelz",
        abstract:
            "Print the channelz tree of a running process: its connections, channels and sockets, and why any is down.",
        discussion: """
            TARGET is either the URL of an app's /debug/channelz (the example app's: each pool's \
            connections joined with their channels), or HOST:PORT of a grpc.channelz.v1 service \
            (`example-app --channelz-port`, `grpc-pool demo --channelz-port`, any gRPC server that \
            serves channelz), read through a pool.
            """
    )

    @Argument(help: "http://HOST:PORT/debug/channelz, or HOST:PORT of a channelz service.")
    var target: String

    @Flag(help: "Print one JSON object instead of the tree.")
    var json = false

    func run() async throws {
        let object: [String: Any]
        if self.target.hasPrefix("http://") || self.target.hasPrefix("https://") {
            object = try await Self.fetch(self.target)
        } else {
            object = ["channels": try await Self.readService(self.target)]
        }
        if self.json {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            writeLine(String(decoding: data, as: UTF8.self))
        } else {
            for line in Self.tree(object) { writeLine(line) }
        }
    }

    /// An app's `/debug/channelz`.
    static func fetch(_ url: String) async throws -> [String: Any] {
        guard let address = URL(string: url) else { throw ValidationError("'\(url)' is not a URL") }
        var request = URLRequest(url: address)
        request.timeoutInterval = 10
        let (data, _) = try await URLSession.shared.data(for: request)
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw ValidationError("\(url) did not answer a JSON object")
        }
        return object
    }

    /// Every top channel of the channelz service at `target`, with its subchannels and sockets.
    static func readService(_ target: String) async throws -> [[String: Any]] {
        var config = PoolManager.ServiceConfig(endpoints: [try Endpoints.parse(target)], poolSize: 1)
        config.defaultCallTimeout = .seconds(10)
        let manager = try PoolManager(services: ["channelz": config], logger: .cli(verbose: false))
        let running = Task { try await manager.run() }
        defer {
            manager.beginGracefulShutdown()
            running.cancel()
        }
        let client = Grpc_Channelz_V1_Channelz.Client(wrapping: try manager.client(for: "channelz"))
        var channels: [[String: Any]] = []
        var start: Int64 = 0
        while true {
            let page = try await client.getTopChannels(.with { $0.startChannelID = start })
            for channel in page.channel {
                var object = ConnectionChannelz.json(channel)
                var events = channel.data.trace.events
                var subchannels: [[String: Any]] = []
                for ref in channel.subchannelRef {
                    // Gone since it was listed (the process makes and closes channels): left out.
                    guard
                        let subchannel = try await Self.unlessGone({
                            try await client.getSubchannel(.with { $0.subchannelID = ref.subchannelID }).subchannel
                        })
                    else { continue }
                    events += subchannel.data.trace.events
                    var sockets: [[String: Any]] = []
                    for socketRef in subchannel.socketRef {
                        guard
                            let socket = try await Self.unlessGone({
                                try await client.getSocket(.with { $0.socketID = socketRef.socketID }).socket
                            })
                        else { continue }
                        sockets.append(ConnectionChannelz.json(socket))
                    }
                    subchannels.append([
                        "id": Int(ref.subchannelID),
                        "state": ConnectionChannelz.name(subchannel.data.state.state),
                        "sockets": sockets,
                    ])
                }
                object["subchannels"] = subchannels
                if channel.data.state.state != .ready, let reason = ConnectionChannelz.latestTrouble(events) {
                    object["down_reason"] = reason
                }
                channels.append(object)
                start = max(start, channel.ref.channelID + 1)
            }
            if page.end || page.channel.isEmpty { break }
        }
        return channels
    }

    /// The answer of `read`, or `nil` when the object is gone (NOT_FOUND).
    private static func unlessGone<Value>(_ read: () async throws -> Value) async throws -> Value? {
        do {
            return try await read()
        } catch let error as RPCError where error.code == .notFound {
            return nil
        }
    }

    /// The tree as lines: services and connections (an app's view), or channels (a service's).
    static func tree(_ object: [String: Any]) -> [String] {
        var lines: [String] = []
        if let services = object["services"] as? [String: [[String: Any]]] {
            for (service, connections) in services.sorted(by: { $0.key < $1.key }) {
                lines.append(service)
                for connection in connections.sorted(by: { ($0["index"] as? Int ?? 0) < ($1["index"] as? Int ?? 0) }) {
                    var line = "  connection \(connection["index"] ?? "?")  \(connection["address"] ?? "")  "
                    line += "\(connection["state"] ?? "")"
                    line += (connection["healthy"] as? Bool == true) ? ", healthy" : ", not healthy"
                    if connection["ejected"] as? Bool == true { line += ", ejected" }
                    line += "  requests \(connection["requests"] ?? 0) (\(connection["successes"] ?? 0) ok, "
                    line += "\(connection["failures"] ?? 0) failed)"
                    if let channel = connection["channel"] as? [String: Any] {
                        line += "  " + Self.channelLine(channel)
                    }
                    lines.append(line)
                    if let reason = connection["down_reason"] { lines.append("    down: \(reason)") }
                    for socket in connection["sockets"] as? [[String: Any]] ?? [] {
                        lines.append("    " + Self.socketLine(socket))
                    }
                }
            }
        }
        for channel in object["channels"] as? [[String: Any]] ?? [] {
            lines.append("\(Self.channelLine(channel))  \(channel["target"] ?? "")")
            if let reason = channel["down_reason"] { lines.append("  down: \(reason)") }
            for subchannel in channel["subchannels"] as? [[String: Any]] ?? [] {
                lines.append("  subchannel \(subchannel["id"] ?? "?")  \(subchannel["state"] ?? "")")
                for socket in subchannel["sockets"] as? [[String: Any]] ?? [] {
                    lines.append("    " + Self.socketLine(socket))
                }
            }
        }
        return lines
    }

    private static func channelLine(_ channel: [String: Any]) -> String {
        "channel \(channel["id"] ?? "?") \(channel["state"] ?? "")  calls \(channel["calls_started"] ?? 0) started, "
            + "\(channel["calls_succeeded"] ?? 0) ok, \(channel["calls_failed"] ?? 0) failed"
    }

    private static func socketLine(_ socket: [String: Any]) -> String {
        "socket \(socket["id"] ?? "?")  streams \(socket["streams_started"] ?? 0) started, "
            + "\(socket["streams_succeeded"] ?? 0) ok, \(socket["streams_failed"] ?? 0) failed  "
            + "messages \(socket["messages_sent"] ?? 0) sent, \(socket["messages_received"] ?? 0) received  "
            + "keepalives \(socket["keep_alives_sent"] ?? 0)"
            + (socket["local_flow_control_window"].map { "  window local \($0)" } ?? "")
            + (socket["remote_flow_control_window"].map { ", remote \($0)" } ?? "")
    }
}
