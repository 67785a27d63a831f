import DemoServices
import Foundation
import GRPCCore
import GRPCPool
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite("Example app (Hummingbird + ServiceGroup)")
struct ExampleAppTests {
    @Test("Its endpoints answer over real HTTP, /metrics is Prometheus text, and SIGTERM stops it cleanly")
    func endpoints() async throws {
        let app = try await ExampleAppProcess(["--port", "0"])
        let clock = ContinuousClock()
        func get(_ path: String, method: String = "GET", body: Data? = nil) async throws -> (Int, Data) {
            try await app.get(path, method: method, body: body)
        }
        func json(_ data: Data) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        }

        // /health: every service and connection, healthy (the pools connect in the background).
        var healthy = false
        for _ in 0..<100 where !healthy {
            let (status, data) = try await get("/health")
            healthy = status == 200
            if healthy {
                let body = try json(data)
                #expect(Set(body.keys) == ["stt", "nlp", "summary"])
                let stt = try #require(body["stt"] as? [String: Any])
                #expect((stt["connections"] as? [[String: Any]])?.count == 3)
                #expect(stt["healthy"] as? Bool == true)
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(healthy)

        let (sttStatus, sttData) = try await get("/stt/transcribe", method: "POST", body: Data(count: 640))
        #expect(sttStatus == 200)
        #expect(try json(sttData)["text"] as? String == "transcript of 640 bytes (en)")

        let (nlpStatus, nlpData) = try await get("/nlp/analyze?text=good%20good%20bad")
        #expect(nlpStatus == 200)
        #expect(try json(nlpData)["tokens"] as? [String] == ["good", "good", "bad"])

        let (summaryStatus, summaryData) = try await get("/summary?text=One.%20Two.%20Three.&sentences=2")
        #expect(summaryStatus == 200)
        #expect(try json(summaryData)["summary"] as? String == "One. Two.")

        // /metrics: Prometheus text with the pool's series, counting the calls above.
        let (metricsStatus, metricsData) = try await get("/metrics")
        #expect(metricsStatus == 200)
        let text = String(decoding: metricsData, as: UTF8.self)
        #expect(text.contains("# TYPE grpc_pool_rpcs_total counter"))
        #expect(text.contains("# TYPE grpc_pool_connection_healthy gauge"))
        #expect(text.contains("grpc_pool_rpc_duration_seconds"))
        let sttCalls = text.split(separator: "\n").filter {
            $0.hasPrefix("grpc_pool_rpcs_total{") && $0.contains("service=\"stt\"")
                && $0.contains("outcome=\"success\"")
        }
        #expect(sttCalls.compactMap { Double($0.split(separator: " ").last ?? "") }.reduce(0, +) >= 1)
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            // name{labels} value — the Prometheus text format.
            #expect(
                line.range(
                    of: #"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+|Inf|NaN$"#,
                    options: .regularExpression
                ) != nil,
                "\(line)"
            )
        }

        // SIGTERM: graceful shutdown of the HTTP server and the pools, within a few seconds.
        let stoppedAt = clock.now
        app.process.send(SIGTERM)
        let termination = await app.process.exit(timeLimit: .seconds(10))
        var rest: [String] = []
        while let line = await app.output.next() { rest.append(line) }
        #expect(clock.now - stoppedAt < .seconds(5))
        // What it wrote after SIGTERM (a sanitizer's report, under make tsan) explains a bad exit.
        #expect(termination == .exited(0), "\(rest.joined(separator: "\n"))")
        #expect(rest.contains("shut down cleanly"))
    }

    @Test("With retries forced, /metrics counts every attempt under A66's names, per status, in A66's buckets")
    func standardMetrics() async throws {
        try await withDemoServer { stt in
            let app = try await ExampleAppProcess(["--port", "0", "--stt", stt.target])
            func get(_ path: String, method: String = "GET", body: Data? = nil) async throws -> (Int, Data) {
                try await app.get(path, method: method, body: body)
            }
            #expect(try await poll { try await get("/health").0 == 200 })

            // Ten calls; the server fails the first two attempts with UNAVAILABLE (the first
            // call's first and second), which the pool retries: 12 attempts.
            stt.failNextCalls(2, with: .init(code: .unavailable, message: "forced"))
            for _ in 0..<10 {
                let (status, _) = try await get("/stt/transcribe", method: "POST", body: Data(count: 64))
                #expect(status == 200)
            }
            let text = String(decoding: try await get("/metrics").1, as: UTF8.self)
            let lines: [Substring] = text.split(separator: "\n").filter {
                $0.contains("grpc_method=\"demo.STT/Transcribe\"")
            }
            func sum(_ prefix: String, _ labels: [String] = []) -> Double {
                var total = 0.0
                for line in lines where line.hasPrefix(prefix + "{") && labels.allSatisfy({ line.contains($0) }) {
                    total += Double(line.split(separator: " ").last ?? "") ?? 0
                }
                return total
            }
            #expect(sum("grpc_client_attempt_started_total") == 12, "\(lines.joined(separator: "\n"))")
            #expect(sum("grpc_client_attempt_duration_seconds_count", [#"grpc_status="OK""#]) == 10)
            #expect(sum("grpc_client_attempt_duration_seconds_count", [#"grpc_status="UNAVAILABLE""#]) == 2)
            #expect(sum("grpc_client_call_duration_seconds_count", [#"grpc_status="OK""#]) == 10)
            #expect(sum("grpc_client_call_duration_seconds_count", [#"grpc_status="UNAVAILABLE""#]) == 0)
            #expect(sum("grpc_client_attempt_sent_total_compressed_message_size_bytes_count") == 12)
            #expect(lines.allSatisfy { $0.contains(#"grpc_target="dns:///\#(stt.target)""#) })
            // A66's latency bounds, and nothing else, on the attempt histogram.
            let bounds = Set(
                lines.filter { $0.hasPrefix("grpc_client_attempt_duration_seconds_bucket{") && $0.contains("OK") }
                    .compactMap { line -> Double? in
                        guard let range = line.range(of: #"le="([^"]*)""#, options: .regularExpression) else {
                            return nil
                        }
                        let value = line[range].dropFirst(4).dropLast()
                        return value == "+Inf" ? .infinity : Double(value)
                    }
            )
            #expect(bounds == Set(GRPCMetricNames.latencyBuckets + [.infinity]))
        }
    }
    @Test(
        "With --otlp-endpoint, the HTTP request, each attempt of its call through the pool and the service's handling are one trace at a real OTLP receiver",
        .disabled(if: underSanitizer, "a sanitizer build has no swift-otel (Package.swift)")
    )
    func traces() async throws {
        let receiver = try await OTLPReceiver()
        let app = try await ExampleAppProcess(["--port", "0", "--otlp-endpoint", "http://127.0.0.1:\(receiver.port)"])
        #expect(try await poll { try await app.get("/health").0 == 200 })
        let (status, _) = try await app.get("/nlp/analyze?text=good")
        #expect(status == 200)
        // A clean stop exports what the batch processor still holds.
        app.process.send(SIGTERM)
        #expect(await app.process.exit(timeLimit: .seconds(30)) == .exited(0))

        var spans: [[String: Any]] = []
        let client: [String: Any]? = await {
            var found: [String: Any]?
            _ = await poll(timeLimit: .seconds(20)) {
                spans = receiver.spans
                found = spans.first {
                    $0["name"] as? String == "demo.NLP/Analyze" && $0["kind"] as? String == "SPAN_KIND_CLIENT"
                }
                return found != nil
            }
            return found
        }()
        let span = try #require(client, "\(spans)")
        let attributes = try #require(span["attributes"] as? [String: Any])
        #expect(attributes["rpc.system"] as? String == "grpc")
        #expect(attributes["rpc.service"] as? String == "demo.NLP")
        #expect(attributes["rpc.method"] as? String == "Analyze")
        #expect(attributes["server.address"] as? String == "127.0.0.1")
        #expect(attributes["grpc.pool.service"] as? String == "nlp")
        #expect(attributes["grpc.pool.attempt"] as? Int == 1)
        #expect(attributes["rpc.grpc.status_code"] as? Int == 0)
        #expect(span["service"] as? String == "example-app")
        // Its parent: the HTTP request's server span (Hummingbird's TracingMiddleware).
        let parent = spans.first { $0["span_id"] as? String == span["parent_span_id"] as? String }
        #expect(parent?["kind"] as? String == "SPAN_KIND_SERVER", "\(spans)")
        #expect(parent?["trace_id"] as? String == span["trace_id"] as? String)
        // Its child: the demo service's server span, joined through the traceparent the pool sent.
        let child = spans.first { $0["parent_span_id"] as? String == span["span_id"] as? String }
        #expect(child?["kind"] as? String == "SPAN_KIND_SERVER", "\(spans)")
        #expect(child?["name"] as? String == "demo.NLP/Analyze")
        #expect(child?["trace_id"] as? String == span["trace_id"] as? String)
    }
}

extension ExampleAppTests {
    @Test(
        "GET /debug/channelz and grpc-pool channelz show the same numbers; grpc-pool channelz says which connections are down and why"
    )
    func channelz() async throws {
        // stt's backend is gone: its port was a server's a moment ago.
        let gone = DemoServer()
        try await gone.start()
        let deadTarget = gone.target
        await gone.stop()
        let app = try await ExampleAppProcess(["--port", "0", "--stt", deadTarget, "--channelz-port", "0"])
        var channelzPort: Int?
        #expect(
            await poll(timeLimit: .seconds(30)) {
                let output = app.process.outputSoFar
                guard let range = output.range(of: "channelz on 127.0.0.1:") else { return false }
                channelzPort = Int(output[range.upperBound...].prefix { $0.isNumber })
                return channelzPort != nil
            }
        )
        let channelz = "127.0.0.1:\(try #require(channelzPort))"
        func view() async throws -> [String: [[String: Any]]] {
            let data = try await app.get("/debug/channelz").1
            let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
            return try #require(object["services"] as? [String: [[String: Any]]])
        }
        #expect(
            try await poll {
                try await view()["nlp"]?.allSatisfy { $0["healthy"] as? Bool == true } == true
            }
        )
        for _ in 0..<5 { #expect(try await app.get("/nlp/analyze?text=good").0 == 200) }

        // The app's joined view against the channelz service read by the CLI.
        let services = try await view()
        let (status, output) = try await runGRPCPool(["channelz", channelz, "--json"])
        #expect(status == 0, "\(output)")
        let line = try #require(output.split(separator: "\n").last { $0.hasPrefix("{") }, "\(output)")
        let tree = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let channels = try #require(tree["channels"] as? [[String: Any]])
        let nlp = try #require(services["nlp"])
        #expect(nlp.reduce(0) { $0 + ($1["requests"] as? Int ?? 0) } == 5)
        for connection in nlp {
            let channel = try #require(connection["channel"] as? [String: Any], "\(connection)")
            let listed = try #require(channels.first { $0["id"] as? Int == channel["id"] as? Int }, "\(channels)")
            #expect(listed["calls_started"] as? Int == connection["requests"] as? Int)
            let sockets = try #require(connection["sockets"] as? [[String: Any]])
            let listedSockets = (listed["subchannels"] as? [[String: Any]] ?? []).flatMap {
                $0["sockets"] as? [[String: Any]] ?? []
            }
            #expect(
                sockets.map { $0["streams_started"] as? Int } == listedSockets.map { $0["streams_started"] as? Int }
            )
            #expect(sockets.first?["streams_started"] as? Int == connection["requests"] as? Int)
        }

        // stt's connections are down, and the tree says so, with the reason.
        let stt = try #require(services["stt"])
        #expect(stt.count == 3)
        for connection in stt {
            #expect(connection["healthy"] as? Bool == false)
            #expect(connection["down_reason"] is String, "\(connection)")
        }
        let (textStatus, text) = try await runGRPCPool(["channelz", "\(app.base)/debug/channelz"])
        #expect(textStatus == 0, "\(text)")
        let lines = text.split(separator: "\n").map(String.init)
        let down = lines.filter { $0.contains("connection") && $0.contains(deadTarget) && $0.contains("not healthy") }
        #expect(down.count == 3, "\(text)")
        #expect(lines.count { $0.hasPrefix("    down: ") } >= 3, "\(text)")
        let (serviceStatus, serviceText) = try await runGRPCPool(["channelz", channelz])
        #expect(serviceStatus == 0, "\(serviceText)")
        let failing = serviceText.split(separator: "\n").filter {
            $0.contains(deadTarget) && ($0.contains("TRANSIENT_FAILURE") || $0.contains("CONNECTING"))
        }
        #expect(failing.count == 3, "\(serviceText)")
        // The core traces when, not why (libgrpc 1.51): the channel's latest change to TRANSIENT_FAILURE.
        let reasons = serviceText.split(separator: "\n").filter {
            $0.hasPrefix("  down: ") && $0.contains("TRANSIENT_FAILURE at ")
        }
        #expect(reasons.count == 3, "\(serviceText)")
        // The app's view says why: the core's own words for the failed connection attempt.
        #expect(lines.count { $0.hasPrefix("    down: ") && $0.contains("Connection refused") } == 3, "\(text)")
    }
}

/// `Scripts/otlp_receiver.py`: a real OTLP/gRPC trace receiver (grpcio and opentelemetry-proto in
/// `.build-venv`), printing each span it receives as a JSON line.
final class OTLPReceiver {
    let process: ChildProcess
    let port: Int

    init() async throws {
        let process = try PythonScript.start("otlp_receiver.py", errors: .capture, input: true)
        self.process = process
        guard let port = await PythonScript.listeningPort(of: process, what: "the OTLP receiver") else {
            process.send(SIGKILL)
            throw CancellationError()
        }
        self.port = port
    }

    deinit {
        self.process.send(SIGKILL)
    }

    /// The spans received so far.
    var spans: [[String: Any]] {
        self.process.outputSoFar.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("{") else { return nil }
            return try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        }
    }
}

/// The example app as a process of a test: started with `arguments`, its port read from what it
/// prints once it listens; killed when the test is done with it, whatever happens (and after two
/// minutes at the most, so that it never hangs a run).
final class ExampleAppProcess {
    let process: ChildProcess
    /// `http://127.0.0.1:<port>`.
    let base: String
    /// What it prints, from after the line with its port.
    var output: AsyncStream<String>.Iterator
    private let watchdog: Task<Void, any Error>

    struct NoPort: Error, CustomStringConvertible {
        var description: String { "the example app did not report its port within 30 s" }
    }

    init(_ arguments: [String]) async throws {
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var executable = directory.appendingPathComponent("example-app")
        if !FileManager.default.fileExists(atPath: executable.path) {
            executable = directory.deletingLastPathComponent().appendingPathComponent("example-app")
        }
        let process = try ChildProcess(executable.path, arguments, output: .capture)
        self.process = process
        self.watchdog = Task {
            try await Task.sleep(for: .seconds(120))
            process.send(SIGKILL)
        }
        self.output = process.lines().makeAsyncIterator()
        var port: Int?
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        while port == nil, ContinuousClock.now < deadline, let line = await self.output.next() {
            if let range = line.range(of: "listening on http://127.0.0.1:") { port = Int(line[range.upperBound...]) }
        }
        guard let port else {
            process.send(SIGKILL)
            throw NoPort()
        }
        self.base = "http://127.0.0.1:\(port)"
    }

    deinit {
        self.watchdog.cancel()
        self.process.send(SIGKILL)
    }

    /// A request to `path`: its status and body.
    func get(_ path: String, method: String = "GET", body: Data? = nil) async throws -> (Int, Data) {
        var request = URLRequest(url: URL(string: self.base + path)!)
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 10
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }
}
