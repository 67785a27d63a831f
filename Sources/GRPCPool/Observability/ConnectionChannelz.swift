internal import Foundation
internal import GRPCPoolCoreBridge
internal import SwiftProtobuf

/// One connection of a pool as the pool sees it (``ConnectionMetrics``: index, address, state,
/// health, ejection, calls) joined with what the C core's channelz data says about its channel:
/// the channel, its subchannel, and the socket under it (streams, messages, keepalive pings,
/// flow-control windows, and the trace events that say why a connection is down).
public struct ConnectionChannelz: Sendable {
    public var metrics: ConnectionMetrics
    /// Its channel now; `nil` when the core keeps no channelz data for it.
    public var channel: Grpc_Channelz_V1_Channel?
    /// The channel's subchannels (one per connection: the pool's channels have one address).
    public var subchannels: [Grpc_Channelz_V1_Subchannel]
    /// The sockets of those subchannels: the TCP connection, when there is one.
    public var sockets: [Grpc_Channelz_V1_Socket]

    /// Why the connection cannot connect now, in the core's words (`failed to connect to all
    /// addresses; last error: … Connection refused`), when its channel is failing.
    public var connectionFailure: String?

    /// Reads the channel `metrics` names, and everything under it, from the core.
    init(_ metrics: ConnectionMetrics, connectionFailure: String? = nil) {
        self.metrics = metrics
        self.connectionFailure = connectionFailure
        self.channel = nil
        self.subchannels = []
        self.sockets = []
        guard let id = metrics.channelzID,
            let response: Grpc_Channelz_V1_GetChannelResponse = try? ChannelzService.parse(
                CoreChannelz.channel(id),
                what: "channel \(id)"
            )
        else { return }
        self.channel = response.channel
        for ref in response.channel.subchannelRef {
            guard
                let subchannel: Grpc_Channelz_V1_GetSubchannelResponse = try? ChannelzService.parse(
                    CoreChannelz.subchannel(Int(ref.subchannelID)),
                    what: "subchannel \(ref.subchannelID)"
                )
            else { continue }
            self.subchannels.append(subchannel.subchannel)
            for socketRef in subchannel.subchannel.socketRef {
                guard
                    let socket: Grpc_Channelz_V1_GetSocketResponse = try? ChannelzService.parse(
                        CoreChannelz.socket(Int(socketRef.socketID)),
                        what: "socket \(socketRef.socketID)"
                    )
                else { continue }
                self.sockets.append(socket.socket)
            }
        }
    }

    /// Why it is down, when it is: the pool's last error, and the latest trouble the core traced
    /// on its channel or subchannel.
    public var downReason: String? {
        var events: [Grpc_Channelz_V1_ChannelTraceEvent] = self.channel?.data.trace.events ?? []
        for subchannel in self.subchannels { events += subchannel.data.trace.events }
        let reasons = [self.connectionFailure ?? self.metrics.lastError, Self.latestTrouble(events)].compactMap { $0 }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }

    /// The latest trouble among channelz trace `events` — a warning, an error, or a change to
    /// TRANSIENT_FAILURE or SHUTDOWN — with its time (UTC).
    public static func latestTrouble(_ events: [Grpc_Channelz_V1_ChannelTraceEvent]) -> String? {
        let troubles = events.filter { event in
            event.severity == .ctWarning || event.severity == .ctError
                || event.description_p.hasSuffix("TRANSIENT_FAILURE") || event.description_p.hasSuffix("SHUTDOWN")
        }
        guard let latest = troubles.max(by: { $0.timestamp.timeIntervalSince1970 < $1.timestamp.timeIntervalSince1970 })
        else { return nil }
        let time = Date(timeIntervalSince1970: latest.timestamp.timeIntervalSince1970)
        return "\(latest.description_p) at \(time.formatted(.iso8601))"
    }
}

extension PoolManager {
    /// Every connection of every pool, joined with its channel's channelz data; a connection
    /// whose channel is failing says why, asked of the core now.
    public func channelz() async -> [ServiceID: [ConnectionChannelz]] {
        var result: [ServiceID: [ConnectionChannelz]] = [:]
        for (id, pool) in self.pools {
            var connections: [ConnectionChannelz] = []
            for connection in pool.connections {
                let failure = await connection.connectionFailure()
                connections.append(ConnectionChannelz(connection.metrics(), connectionFailure: failure))
            }
            result[id] = connections
        }
        return result
    }
}

extension ConnectionChannelz {
    /// As a JSON object (what the example app serves at `/debug/channelz`): the pool's view of
    /// the connection, its channel's counters, and its sockets'.
    public var jsonObject: [String: Any] {
        var object: [String: Any] = [
            "index": self.metrics.index,
            "endpoint": self.metrics.endpoint,
            "address": self.metrics.address,
            "state": "\(self.metrics.state)",
            "healthy": self.metrics.isHealthy,
            "active": self.metrics.isActive,
            "ejected": self.metrics.isEjected,
            "requests": self.metrics.totalRequests,
            "successes": self.metrics.successfulRequests,
            "failures": self.metrics.failedRequests,
            "in_flight": self.metrics.inFlight,
        ]
        if let reason = self.downReason, !self.metrics.isHealthy { object["down_reason"] = reason }
        if let channel = self.channel { object["channel"] = Self.json(channel) }
        object["sockets"] = self.sockets.map(Self.json)
        return object
    }

    /// A channel's ref and counters as JSON.
    public static func json(_ channel: Grpc_Channelz_V1_Channel) -> [String: Any] {
        [
            "id": Int(channel.ref.channelID),
            "target": channel.data.target,
            "state": Self.name(channel.data.state.state),
            "calls_started": Int(channel.data.callsStarted),
            "calls_succeeded": Int(channel.data.callsSucceeded),
            "calls_failed": Int(channel.data.callsFailed),
        ]
    }

    /// A socket's counters as JSON.
    public static func json(_ socket: Grpc_Channelz_V1_Socket) -> [String: Any] {
        let data = socket.data
        var object: [String: Any] = [
            "id": Int(socket.ref.socketID),
            "streams_started": Int(data.streamsStarted),
            "streams_succeeded": Int(data.streamsSucceeded),
            "streams_failed": Int(data.streamsFailed),
            "messages_sent": Int(data.messagesSent),
            "messages_received": Int(data.messagesReceived),
            "keep_alives_sent": Int(data.keepAlivesSent),
        ]
        // Windows only where the core reports them.
        if data.hasLocalFlowControlWindow {
            object["local_flow_control_window"] = Int(data.localFlowControlWindow.value)
        }
        if data.hasRemoteFlowControlWindow {
            object["remote_flow_control_window"] = Int(data.remoteFlowControlWindow.value)
        }
        return object
    }

    /// A connectivity state's name in the channelz proto (`READY`, `TRANSIENT_FAILURE`, …).
    public static func name(_ state: Grpc_Channelz_V1_ChannelConnectivityState.State) -> String {
        switch state {
        case .idle: "IDLE"
        case .connecting: "CONNECTING"
        case .ready: "READY"
        case .transientFailure: "TRANSIENT_FAILURE"
        case .shutdown: "SHUTDOWN"
        default: "UNKNOWN"
        }
    }
}
