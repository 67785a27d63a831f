public import GRPCCore
internal import GRPCPoolCoreBridge
internal import SwiftProtobuf

/// gRPC's channelz service (`grpc.channelz.v1.Channelz`, gRFC A14) over the C core's own
/// channelz data: every channel of the process's pools (and of their etcd clients), its
/// subchannel, and the socket under it — calls and streams started, succeeded and failed,
/// messages, keepalive pings sent, flow-control windows, last call times.
///
/// Mount it on the application's grpc-swift-2 server, and the standard tools (grpcdebug,
/// grpcio-channelz's client) read it:
///
/// ```swift
/// let server = GRPCServer(transport: transport, services: [myService, ChannelzService()])
/// ```
///
/// ``ConnectionMetrics/channelzID`` says which channel is which connection of which pool.
/// The core renders each answer as proto3 JSON; swift-protobuf parses it into the response.
public struct ChannelzService: Grpc_Channelz_V1_Channelz.SimpleServiceProtocol {
    public init() {}

    public func getTopChannels(
        request: Grpc_Channelz_V1_GetTopChannelsRequest,
        context: ServerContext
    ) async throws -> Grpc_Channelz_V1_GetTopChannelsResponse {
        var response: Grpc_Channelz_V1_GetTopChannelsResponse = try Self.parse(
            CoreChannelz.topChannels(start: Int(request.startChannelID)),
            what: "top channels"
        )
        Self.page(&response.channel, end: &response.end, maxResults: request.maxResults)
        return response
    }

    public func getServers(
        request: Grpc_Channelz_V1_GetServersRequest,
        context: ServerContext
    ) async throws -> Grpc_Channelz_V1_GetServersResponse {
        var response: Grpc_Channelz_V1_GetServersResponse = try Self.parse(
            CoreChannelz.servers(start: Int(request.startServerID)),
            what: "servers"
        )
        Self.page(&response.server, end: &response.end, maxResults: request.maxResults)
        return response
    }

    public func getServer(
        request: Grpc_Channelz_V1_GetServerRequest,
        context: ServerContext
    ) async throws -> Grpc_Channelz_V1_GetServerResponse {
        try Self.parse(CoreChannelz.server(Int(request.serverID)), what: "server \(request.serverID)")
    }

    public func getServerSockets(
        request: Grpc_Channelz_V1_GetServerSocketsRequest,
        context: ServerContext
    ) async throws -> Grpc_Channelz_V1_GetServerSocketsResponse {
        try Self.parse(
            CoreChannelz.serverSockets(
                server: Int(request.serverID),
                start: Int(request.startSocketID),
                max: Int(request.maxResults)
            ),
            what: "server \(request.serverID)"
        )
    }

    public func getChannel(
        request: Grpc_Channelz_V1_GetChannelRequest,
        context: ServerContext
    ) async throws -> Grpc_Channelz_V1_GetChannelResponse {
        try Self.parse(CoreChannelz.channel(Int(request.channelID)), what: "channel \(request.channelID)")
    }

    public func getSubchannel(
        request: Grpc_Channelz_V1_GetSubchannelRequest,
        context: ServerContext
    ) async throws -> Grpc_Channelz_V1_GetSubchannelResponse {
        try Self.parse(CoreChannelz.subchannel(Int(request.subchannelID)), what: "subchannel \(request.subchannelID)")
    }

    public func getSocket(
        request: Grpc_Channelz_V1_GetSocketRequest,
        context: ServerContext
    ) async throws -> Grpc_Channelz_V1_GetSocketResponse {
        var response: Grpc_Channelz_V1_GetSocketResponse = try Self.parse(
            CoreChannelz.socket(Int(request.socketID)),
            what: "socket \(request.socketID)"
        )
        if request.summary { response.socket.data.option = [] }
        return response
    }

    /// Keeps the first `maxResults` of `items` (all when 0): the core's page is its own size;
    /// a page cut short is not the end.
    private static func page<Item>(_ items: inout [Item], end: inout Bool, maxResults: Int64) {
        guard maxResults > 0, items.count > maxResults else { return }
        items.removeLast(items.count - Int(maxResults))
        end = false
    }

    /// The core's JSON for `what` as a response; NOT_FOUND when the core has no such object.
    static func parse<Response: SwiftProtobuf.Message>(_ json: String?, what: String) throws -> Response {
        guard let json else { throw RPCError(code: .notFound, message: "channelz has no \(what)") }
        var options = JSONDecodingOptions()
        options.ignoreUnknownFields = true
        do {
            return try Response(jsonString: json, options: options)
        } catch {
            throw RPCError(
                code: .internalError,
                message: "the core's channelz JSON for \(what) did not parse: \(error)"
            )
        }
    }
}
