internal import CGRPCCore
private import Foundation

/// The C core's channelz data (gRFC A14): its channels, subchannels, sockets and servers, each
/// rendered by the core as JSON in the proto3 JSON mapping of `grpc.channelz.v1`.
///
/// The core keeps the data for every channel it has (channelz is on by default); these read it.
/// Each holds the runtime for the read, so the core is initialized while it renders.
package enum CoreChannelz {
    /// Channels the application created (not subchannels), from id `start` on: a
    /// `GetTopChannelsResponse`.
    package static func topChannels(start: Int) -> String? {
        self.read { grpc_channelz_get_top_channels(intptr_t(start)) }
    }

    /// One channel: a `GetChannelResponse`; `nil` when there is none with `id`.
    package static func channel(_ id: Int) -> String? {
        self.read { grpc_channelz_get_channel(intptr_t(id)) }
    }

    /// One subchannel: a `GetSubchannelResponse`; `nil` when there is none with `id`.
    package static func subchannel(_ id: Int) -> String? {
        self.read { grpc_channelz_get_subchannel(intptr_t(id)) }
    }

    /// One socket: a `GetSocketResponse`; `nil` when there is none with `id`.
    package static func socket(_ id: Int) -> String? {
        self.read { grpc_channelz_get_socket(intptr_t(id)) }
    }

    /// Servers of the core in this process, from id `start` on: a `GetServersResponse`.
    package static func servers(start: Int) -> String? {
        self.read { grpc_channelz_get_servers(intptr_t(start)) }
    }

    /// One server: a `GetServerResponse`; `nil` when there is none with `id`.
    package static func server(_ id: Int) -> String? {
        self.read { grpc_channelz_get_server(intptr_t(id)) }
    }

    /// A server's sockets from id `start` on, at most `max` (0: the core's page size): a
    /// `GetServerSocketsResponse`.
    package static func serverSockets(server: Int, start: Int, max: Int) -> String? {
        self.read { grpc_channelz_get_server_sockets(intptr_t(server), intptr_t(start), intptr_t(max)) }
    }

    private static func read(_ render: () -> UnsafeMutablePointer<CChar>?) -> String? {
        let runtime = CoreRuntime.shared()
        defer { withExtendedLifetime(runtime) {} }
        guard let text = render() else { return nil }
        defer { gpr_free(text) }
        return String(cString: text)
    }

    // MARK: - A channel's id

    /// The highest channel id seen so far. Channels of the bridge are created under this lock,
    /// each followed by the read of the channels created since: the newest with the new
    /// channel's target is it (the core has no call that returns a channel's id). A `Locked`
    /// (a pthread mutex, which ThreadSanitizer sees), as all of the package's shared state.
    private static let creation = Locked<Int>(0)

    /// Creates a channel with `create` and finds its channelz id; `nil` when the core keeps no
    /// channelz data for it.
    static func creating(target: String, _ create: () throws -> OpaquePointer) rethrows -> (OpaquePointer, Int?) {
        try self.creation.withLock { highest in
            let channel = try create()
            let recent = Self.newest(target: target, from: highest + 1)
            highest = Swift.max(highest, recent.highest)
            if let found = recent.found { return (channel, found) }
            // None among the channels made since: the core may have numbered anew after a
            // shutdown; from the first.
            let all = Self.newest(target: target, from: 0)
            highest = all.highest
            return (channel, all.found)
        }
    }

    /// The newest channel with `target` among those from id `start` on (pages of the core's
    /// size), and the highest id seen.
    private static func newest(target: String, from start: Int) -> (found: Int?, highest: Int) {
        var (found, highest, next): (Int?, Int, Int) = (nil, 0, start)
        while let json = Self.topChannels(start: next) {
            let channels = Self.channels(in: Data(json.utf8))
            for (id, channelTarget) in channels {
                highest = Swift.max(highest, id)
                if channelTarget == target { found = Swift.max(found ?? 0, id) }
            }
            guard let last = channels.map(\.id).max(), last >= next else { break }
            next = last + 1
        }
        return (found, highest)
    }

    /// The ids and targets of the channels of a `GetTopChannelsResponse` (int64 ids are strings
    /// in proto3's JSON).
    private static func channels(in json: Data) -> [(id: Int, target: String?)] {
        guard let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any],
            let channels = object["channel"] as? [[String: Any]]
        else { return [] }
        return channels.compactMap { channel in
            let ref = channel["ref"] as? [String: Any]
            guard let id = (ref?["channelId"] as? String).flatMap({ Int($0) }) ?? (ref?["channelId"] as? Int) else {
                return nil
            }
            return (id, (channel["data"] as? [String: Any])?["target"] as? String)
        }
    }
}
