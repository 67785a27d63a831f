import DemoServices
import GRPCCore
import GRPCPoolCoreBridge
import Testing

@Suite("Core channel connectivity")
struct ConnectivityTests {
    /// Reconnect quickly so that the tests don't wait out the core's default backoff.
    static var fastReconnect: ChannelOptions {
        var options = ChannelOptions()
        options.reconnectBackoff = .init(
            initial: .milliseconds(100),
            maximum: .milliseconds(300),
            minimumConnectTimeout: .seconds(5)
        )
        return options
    }

    @Test("A new channel is idle, and connecting makes it ready")
    func connect() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            #expect(channel.state() == .idle)
            let state = await channel.connect(timeout: .seconds(5))
            #expect(state == .ready)
            #expect(channel.state() == .ready)
        }
    }

    @Test("A stopped server drives the channel to transientFailure; a restart makes the same channel ready")
    func stopAndRestart() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target, options: Self.fastReconnect)
            let updates = channel.connectivityUpdates()
            // Every state the channel reports, as it reports it: a transientFailure between two
            // reconnection attempts may last only the 100 ms backoff, too short for a poll of
            // the current state to see on two busy cores.
            let states = Collected<ChannelConnectivity>()
            let seen = Task {
                for await state in updates {
                    states.append(state)
                    if states.values.contains(.transientFailure) && state == .ready { break }
                }
            }
            defer { seen.cancel() }
            #expect(await channel.connect(timeout: .seconds(5)) == .ready)

            let clock = ContinuousClock()
            let stopping = clock.now
            await server.stop()
            let stopped = clock.now - stopping
            let failed = await poll {
                _ = channel.state(tryToConnect: true)  // an idle channel connects again
                return states.values.contains(.transientFailure)
            }
            try #require(failed, "stop took \(stopped); states: \(states.values), now \(channel.state())")
            let error = await #expect(throws: RPCError.self) {
                try await channel.unary(method: "/bench.Echo/Unary", request: [1])
            }
            #expect(error?.code == .unavailable)

            try await server.restart()
            #expect(await poll(timeLimit: .seconds(10)) { channel.state(tryToConnect: true) == .ready })
            let response = try await channel.unary(method: "/bench.Echo/Unary", request: [9])
            #expect(response.message == [9])

            await value(of: seen, timeLimit: .seconds(10))
            #expect(states.values.first == .idle)
            #expect(states.values.last == .ready, "states: \(states.values)")
        }
    }

    @Test("Closing a channel ends its connectivity stream with shutdown")
    func closeEndsStream() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let updates = channel.connectivityUpdates()
            #expect(await channel.connect(timeout: .seconds(5)) == .ready)
            channel.close()
            var last: ChannelConnectivity?
            for await state in updates { last = state }
            #expect(last == .shutdown)
        }
    }

    @Test("A target that cannot resolve fails calls with UNAVAILABLE", arguments: ["bogus:///nowhere.invalid:1"])
    func unresolvable(target: String) async throws {
        let channel = try CoreChannel(target: target)
        let error = await #expect(throws: RPCError.self) {
            try await channel.unary(
                method: "/bench.Echo/Unary",
                request: [1],
                options: CoreCallOptions(timeout: .seconds(10))
            )
        }
        #expect(error?.code == .unavailable)
    }

    @Test("Targets: host:port, ipv4:, dns:///, localhost all reach the server")
    func targetForms() async throws {
        try await withDemoServer { server in
            for target in [
                "127.0.0.1:\(server.port)", "ipv4:127.0.0.1:\(server.port)", "dns:///127.0.0.1:\(server.port)",
                "ipv4:127.0.0.1:\(server.port),127.0.0.1:\(server.port)",
            ] {
                let channel = try CoreChannel(target: target)
                let response = try await channel.unary(method: "/bench.Echo/Unary", request: [3])
                #expect(response.message == [3], "target \(target)")
            }
        }
    }
}

@Suite("Core channel subchannel sharing")
struct SubchannelPoolTests {
    private func peers(channels count: Int, localSubchannelPool: Bool, server: DemoServer) async throws -> Int {
        server.resetCounters()
        var options = ChannelOptions()
        options.useLocalSubchannelPool = localSubchannelPool
        let channels = try (0..<count).map { _ in try CoreChannel(target: server.target, options: options) }
        for channel in channels {
            _ = try await channel.unary(method: "/bench.Echo/Unary", request: [1])
        }
        let peers = server.peers.count
        for channel in channels { channel.close() }
        return peers
    }

    @Test("Three channels with the local-subchannel-pool flag make three TCP connections")
    func localPool() async throws {
        try await withDemoServer { server in
            let peers = try await peers(channels: 3, localSubchannelPool: true, server: server)
            #expect(peers == 3)
        }
    }

    @Test("Without the flag, the core shares one TCP connection between channels with equal args")
    func sharedPool() async throws {
        // What the core does (primer P3): equal args → one global subchannel → one connection.
        try await withDemoServer { server in
            let peers = try await peers(channels: 3, localSubchannelPool: false, server: server)
            #expect(peers == 1)
        }
    }
}
