import Foundation
import GRPCPoolCoreBridge
import Testing

/// A gRPC C-core server (grpcio, `Scripts/core_server.py`) with the core's default settings, in
/// its own process: the second server stack of the tests, beside the NIO ``DemoServer``. It
/// serves `bench.Echo` (the four RPC kinds on raw bytes, with `echo-delay-ms` and
/// `echo-status`) and `grpc.health.v1.Health/Check`.
///
/// `make test` installs grpcio into `.build-venv` when it is missing.
final class CoreServer: @unchecked Sendable {
    // Mutated only by start/stop, which a test calls from one task at a time.
    private var process: Process?
    private var input: Pipe?
    /// The end of the last process started: a restart waits for it, to bind the same port.
    private var end: ProcessEnd?
    private(set) var port: Int
    let host: String

    init(host: String = "127.0.0.1", port: Int = 0) {
        self.host = host
        self.port = port
    }

    var target: String { "\(self.host):\(self.port)" }
    var isRunning: Bool { self.process?.isRunning ?? false }

    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Starts the server (on its previous port after a ``stop()``) and waits until it listens.
    func start(timeLimit: Duration = .seconds(30)) async throws {
        await self.end?.wait()
        let python = Self.root.appendingPathComponent(".build-venv/bin/python")
        try #require(
            FileManager.default.isExecutableFile(atPath: python.path),
            "grpcio's virtual environment is missing: run `make test` (it installs it) or `make pydeps`"
        )
        let process = Process()
        process.executableURL = python
        process.arguments = [
            Self.root.appendingPathComponent("Scripts/core_server.py").path, "--host", self.host, "--port",
            "\(self.port)",
        ]
        let output = Pipe()
        let input = Pipe()
        process.standardOutput = output
        process.standardInput = input
        process.standardError = FileHandle.nullDevice
        let end = ProcessEnd(process)
        try process.run()
        self.process = process
        self.end = end
        self.input = input
        let line = await Self.firstLine(of: output.fileHandleForReading, timeLimit: timeLimit)
        guard let line, line.hasPrefix("PORT "), let port = Int(line.dropFirst(5).prefix { $0.isNumber }) else {
            self.stop()
            Issue.record("the C-core server did not start: \(line ?? "no output")")
            throw CancellationError()
        }
        self.port = port
    }

    /// The first line `handle` delivers, read off the cooperative pool (by a readability
    /// handler), or `nil` at end of file or after `timeLimit`.
    private static func firstLine(of handle: FileHandle, timeLimit: Duration) async -> String? {
        let buffer = Locked<(data: Data, continuation: CheckedContinuation<String?, Never>?)>((Data(), nil))
        let finish = { @Sendable (line: String?) in
            let continuation = buffer.withLock { state in
                defer { state.continuation = nil }
                return state.continuation
            }
            handle.readabilityHandler = nil
            continuation?.resume(returning: line)
        }
        let timer = Task {
            try await Task.sleep(for: timeLimit)
            finish(nil)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { continuation in
            buffer.withLock { $0.continuation = continuation }
            handle.readabilityHandler = { handle in
                let chunk = handle.availableData
                guard !chunk.isEmpty else { return finish(nil) }
                let line = buffer.withLock { state -> String? in
                    state.data.append(chunk)
                    guard let end = state.data.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
                    return String(decoding: state.data[..<end], as: UTF8.self)
                }
                if let line { finish(line) }
            }
        }
    }

    /// Kills the server at once (its connections are reset); ``start()`` and ``halt()`` wait
    /// for the process to end.
    func stop() {
        guard let process = self.process else { return }
        if self.end?.hasEnded == false { kill(process.processIdentifier, SIGKILL) }
        try? self.input?.fileHandleForWriting.close()
        self.process = nil
        self.input = nil
    }

    /// Kills the server at once and waits for the process to end.
    func halt() async {
        self.stop()
        await self.end?.wait()
    }

    deinit {
        self.stop()
    }
}

/// Runs `body` with a started ``CoreServer`` and stops it afterwards, whatever happens.
func withCoreServer<Result>(_ body: (CoreServer) async throws -> Result) async throws -> Result {
    let server = CoreServer()
    try await server.start()
    defer { server.stop() }
    return try await body(server)
}
