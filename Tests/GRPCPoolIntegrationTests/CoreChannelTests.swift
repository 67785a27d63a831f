import DemoServices
import GRPCCore
import GRPCPoolCoreBridge
import Testing

/// The C-core bridge against real grpc-swift-2 NIO servers on loopback.
@Suite("Core channel and calls")
struct CoreChannelTests {
    let unary = "/bench.Echo/Unary"

    @Test("A unary call round-trips its bytes and metadata")
    func unaryRoundTrip() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let payload: [UInt8] = Array("hello, pool".utf8)
            let response = try await channel.unary(
                method: unary,
                request: payload,
                metadata: ["x-client": "swift", "x-blob-bin": .binary([0, 1, 2, 255])],
                options: CoreCallOptions(timeout: .seconds(30))  // the suite's first call: generous under load
            )
            #expect(response.message == payload)
            #expect(Array(response.initialMetadata[stringValues: "x-client"]) == ["swift"])
            #expect(Array(response.trailingMetadata[binaryValues: "x-blob-bin"]) == [[0, 1, 2, 255]])
            // The server saw what the client sent.
            #expect(Array(server.lastRequestMetadata[stringValues: "x-client"]) == ["swift"])
            #expect(Array(server.lastRequestMetadata[binaryValues: "x-blob-bin"]) == [[0, 1, 2, 255]])
        }
    }

    @Test("A 4 MiB message round-trips")
    func largeMessage() async throws {
        try await withDemoServer { server in
            var options = ChannelOptions()
            options.maxReceiveMessageSize = 8 << 20
            let channel = try CoreChannel(target: server.target, options: options)
            // 4 MiB of a 256-byte pattern, copied rather than computed byte by byte (a debug build).
            let pattern = (0..<256).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let payload = [[UInt8]](repeating: pattern, count: (4 << 20) / 256).reduce(into: []) { $0 += $1 }
            let response = try await channel.unary(method: unary, request: payload)
            #expect(response.message.count == payload.count)
            #expect(response.message == payload)
        }
    }

    @Test("Server streaming delivers 1000 messages in order")
    func serverStreaming() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let received = try await channel.withCall(
                method: "/bench.Echo/ServerStream",
                metadata: ["echo-repeat": "1000"],
                options: CoreCallOptions(timeout: .seconds(20))
            ) { call in
                #expect(await call.send([7, 7, 7]))
                call.closeSend()
                var messages: [[UInt8]] = []
                while let message = await call.receive() { messages.append(message) }
                let status = await call.status()
                #expect(status.code == .ok)
                return messages
            }
            #expect(received.count == 1000)
            #expect(received.allSatisfy { $0 == [7, 7, 7] })
            #expect(await poll { channel.liveCalls == 0 })
        }
    }

    @Test("Client streaming sends 1000 messages and gets one answer")
    func clientStreaming() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let answer = try await channel.withCall(
                method: "/bench.Echo/ClientStream",
                options: CoreCallOptions(timeout: .seconds(20))
            ) { call in
                for index in 0..<1000 {
                    #expect(await call.send([UInt8(truncatingIfNeeded: index)]))
                }
                call.closeSend()
                let message = await call.receive()
                #expect(await call.receive() == nil)
                #expect(await call.status().code == .ok)
                return message
            }
            #expect(answer == (0..<1000).map { UInt8(truncatingIfNeeded: $0) })
        }
    }

    @Test("A message sent right after a start batch that carries one waits for it instead of being refused")
    func sendAfterStartWithMessage() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let options = CoreCallOptions(timeout: .seconds(20))
            let call = try CoreCall.create(on: channel, method: "/bench.Echo/ClientStream", options: options)
            // 1 MiB is far past HTTP/2's first 64 KiB window: the start batch's message is still in
            // flight when the next sends come, and the core allows one SEND_MESSAGE at a time.
            let first = [UInt8](repeating: 1, count: 1 << 20)
            let rest: [[UInt8]] = [[2, 2, 2], [UInt8](repeating: 3, count: 1834), [4]]
            try call.start(metadata: [:], message: first)
            for message in rest {
                #expect(await call.send(message))
            }
            call.closeSend()
            let answer = await call.receive()
            #expect(await call.status().code == .ok)
            let intact = answer == first + rest.joined()  // a Bool: the arrays are too long to print
            #expect(intact, "got \(answer?.count ?? -1) bytes of \(first.count + rest.joined().count)")
        }
    }

    @Test("Bidirectional streaming ping-pongs 1000 messages, then both sides close")
    func bidirectional() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            try await channel.withCall(
                method: "/bench.Echo/Stream",
                metadata: ["x-trace": "bidi"],
                // 1000 round trips, each two hops through Swift's cooperative pool, which the
                // suite's load tests keep busy on two cores: a bound, not a speed target.
                options: CoreCallOptions(timeout: .seconds(90))
            ) { call in
                for index in 0..<1000 {
                    let message = Array("ping \(index)".utf8)
                    #expect(await call.send(message))
                    let echoed = await call.receive()
                    #expect(echoed == message)
                }
                #expect(Array(await call.initialMetadata()[stringValues: "x-trace"]) == ["bidi"])
                call.closeSend()
                #expect(await call.receive() == nil)
                let status = await call.status()
                #expect(status.code == .ok)
                #expect(Array(status.trailingMetadata[stringValues: "x-trace"]) == ["bidi"])
            }
        }
    }

    @Test("Bidirectional streaming with a concurrent writer and reader")
    func bidirectionalConcurrent() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let count = try await channel.withCall(method: "/bench.Echo/Stream") { call in
                try await withThrowingTaskGroup(of: Int.self) { group in
                    group.addTask {
                        for index in 0..<1000 { _ = await call.send(Array("\(index)".utf8)) }
                        await call.closeSend()
                        return 0
                    }
                    group.addTask {
                        var received = 0
                        while let message = await call.receive() {
                            #expect(message == Array("\(received)".utf8))
                            received += 1
                        }
                        return received
                    }
                    return try await group.reduce(0, +)
                }
            }
            #expect(count == 1000)
        }
    }

    @Test("A deadline shorter than the server's delay fails with DEADLINE_EXCEEDED")
    func deadlineExceeded() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            // Connected and warm first, and a deadline of 2 s: on a loaded machine a shorter one
            // passed while the channel connected, or before the server's busy event loop read
            // the call (it then read the RST_STREAM with it, and never ran the handler).
            #expect(await channel.connect(timeout: .seconds(10)) == .ready)
            _ = try await channel.unary(method: unary, request: [0], options: CoreCallOptions(timeout: .seconds(10)))
            let error = await #expect(throws: RPCError.self) {
                try await channel.unary(
                    method: unary,
                    request: [1],
                    metadata: ["echo-delay-ms": "10000"],
                    options: CoreCallOptions(timeout: .seconds(2))
                )
            }
            #expect(error?.code == .deadlineExceeded)
            // The server saw the call end before it answered (RST_STREAM at the deadline).
            #expect(
                await poll { server.cancelledRPCs == 1 },
                "\(server.requestCount) calls reached the handler, \(server.cancelledRPCs) seen cancelled"
            )
        }
    }

    @Test("Cancelling the Swift task cancels the call on the server")
    func cancellation() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let task = Task {
                try await channel.unary(
                    method: unary,
                    request: [1],
                    metadata: ["echo-delay-ms": "10000", "x-marker": "cancel-me"],
                    options: CoreCallOptions(timeout: .seconds(30))
                )
            }
            // Wait until the server is inside the call, then cancel the task.
            let arrived = await poll {
                server.lastRequestMetadata[stringValues: "x-marker"].contains("cancel-me")
            }
            #expect(arrived)
            task.cancel()
            let result = await task.result
            #expect(throws: RPCError.self) { try result.get() }
            if case .failure(let error as RPCError) = result {
                #expect(error.code == .cancelled)
            }
            #expect(await poll { server.cancelledRPCs == 1 })
            #expect(await poll { channel.liveCalls == 0 })
        }
    }

    @Test("A call in an already-cancelled task is cancelled")
    func alreadyCancelled() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let task = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                return try await channel.unary(method: unary, request: [1], metadata: ["echo-delay-ms": "5000"])
            }
            let result = await task.result
            if case .failure(let error as RPCError) = result {
                #expect(error.code == .cancelled)
            } else {
                Issue.record("expected CANCELLED, got \(result)")
            }
        }
    }

    @Test("A server status, its message and trailing metadata arrive intact")
    func serverStatus() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let error = await #expect(throws: RPCError.self) {
                try await channel.unary(
                    method: unary,
                    request: [1],
                    metadata: ["echo-status": "5", "echo-message": "no such thing", "x-request-id": "42"]
                )
            }
            #expect(error?.code == .notFound)
            #expect(error?.message == "no such thing")
            #expect(error.map { Array($0.metadata[stringValues: "x-request-id"]) } == ["42"])

            // A message outside ASCII travels percent-encoded and arrives as it was.
            server.behaviour.failure = .init(code: .permissionDenied, message: "nicht erlaubt: ünïcødé ✓")
            let denied = await #expect(throws: RPCError.self) {
                try await channel.unary(method: unary, request: [1])
            }
            #expect(denied?.code == .permissionDenied)
            #expect(denied?.message == "nicht erlaubt: ünïcødé ✓")
        }
    }

    @Test("An unknown method fails with UNIMPLEMENTED")
    func unimplemented() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let error = await #expect(throws: RPCError.self) {
                try await channel.unary(method: "/bench.Echo/Nope", request: [1])
            }
            #expect(error?.code == .unimplemented)
        }
    }

    @Test("Invalid metadata is refused with INVALID_ARGUMENT and leaks nothing")
    func invalidMetadata() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let error = await #expect(throws: RPCError.self) {
                try await channel.unary(method: unary, request: [1], metadata: ["bad key\n": "x"])
            }
            #expect(error?.code == .invalidArgument)
            #expect(channel.liveCalls == 0)
        }
    }

    @Test(
        "With gzip as the channel default, the server sees grpc-encoding: gzip",
        arguments: [
            ChannelOptions.Compression.gzip, .deflate,
        ]
    )
    func compression(algorithm: ChannelOptions.Compression) async throws {
        try await withDemoServer { server in
            var options = ChannelOptions()
            options.defaultCompression = algorithm
            let channel = try CoreChannel(target: server.target, options: options)
            let payload = [UInt8](repeating: 0, count: 100_000)
            let response = try await channel.unary(method: unary, request: payload)
            #expect(response.message == payload)
            #expect(Array(server.lastRequestMetadata[stringValues: "grpc-encoding"]) == [algorithm.rawValue])
        }
    }

    @Test("Per-call compression overrides the channel default")
    func perCallCompression() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            let payload = [UInt8](repeating: 1, count: 10_000)
            _ = try await channel.unary(method: unary, request: payload, options: CoreCallOptions(compression: .gzip))
            #expect(Array(server.lastRequestMetadata[stringValues: "grpc-encoding"]) == ["gzip"])
        }
    }

    @Test("An invalid service config is rejected when the channel is created")
    func invalidServiceConfig() throws {
        var options = ChannelOptions()
        options.serviceConfigJSON = "{not json"
        #expect(throws: ChannelError.self) { try CoreChannel(target: "127.0.0.1:1", options: options) }
        options.serviceConfigJSON = "[1, 2]"
        #expect(throws: ChannelError.self) { try CoreChannel(target: "127.0.0.1:1", options: options) }
    }

    @Test("A closed channel refuses new calls with UNAVAILABLE")
    func closedChannel() async throws {
        try await withDemoServer { server in
            let channel = try CoreChannel(target: server.target)
            _ = try await channel.unary(method: unary, request: [1])
            channel.close()
            #expect(channel.state() == .shutdown)
            let error = await #expect(throws: RPCError.self) { try await channel.unary(method: unary, request: [1]) }
            #expect(error?.code == .unavailable)
        }
    }

    @Test("A retry policy in the service config retries UNAVAILABLE")
    func retryPolicy() async throws {
        try await withDemoServer { server in
            var options = ChannelOptions()
            options.enableRetries = true
            options.serviceConfigJSON = """
                {"methodConfig":[{"name":[{"service":"bench.Echo"}],
                  "retryPolicy":{"maxAttempts":3,"initialBackoff":"0.01s","maxBackoff":"0.1s",
                  "backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}
                """
            let channel = try CoreChannel(target: server.target, options: options)
            _ = try await channel.unary(method: unary, request: [1])
            server.resetCounters()
            server.behaviour.failure = .init(code: .unavailable, message: "try again")
            let error = await #expect(throws: RPCError.self) { try await channel.unary(method: unary, request: [1]) }
            #expect(error?.code == .unavailable)
            // Three attempts reached the server: the core retried twice.
            #expect(server.requestCount == 3)
        }
    }
}
