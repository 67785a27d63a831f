import DemoServices
import Foundation
import Testing

/// A gRPC C-core server (grpcio, `Scripts/core_server.py`) with the core's default settings, in
/// its own process: the second server stack of the tests, beside the NIO ``DemoServer``. It
/// serves `bench.Echo` (the four RPC kinds on raw bytes, with `echo-delay-ms` and
/// `echo-status`) and `grpc.health.v1.Health/Check`.
///
/// `make test` installs grpcio into `.build-venv` when it is missing.
final class CoreServer: @unchecked Sendable {
    // Mutated only by start/stop, which a test calls from one task at a time.
    private var process: ChildProcess?
    /// The last process started: a restart waits for its end, to bind the same port.
    private var last: ChildProcess?
    private(set) var port: Int
    let host: String

    init(host: String = "127.0.0.1", port: Int = 0) {
        self.host = host
        self.port = port
    }

    var target: String { "\(self.host):\(self.port)" }
    var isRunning: Bool { self.process.map { !$0.hasExited } ?? false }

    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// Starts the server (on its previous port after a ``stop()``) and waits until it listens.
    func start(timeLimit: Duration = .seconds(30)) async throws {
        await self.last?.exit()
        // The server exits when its standard input closes: with this process, whatever happens.
        let process = try PythonScript.start(
            "core_server.py",
            ["--host", self.host, "--port", "\(self.port)"],
            input: true
        )
        self.process = process
        self.last = process
        guard let port = await PythonScript.listeningPort(of: process, what: "the C-core server", timeLimit: timeLimit)
        else {
            self.stop()
            throw CancellationError()
        }
        self.port = port
    }

    /// `bench.Echo/Stream` calls the client cancelled mid-stream, as the running server saw them.
    var cancelledRPCs: Int {
        self.process?.outputSoFar.split(separator: "\n").count { $0 == "CANCELLED bench.Echo/Stream" } ?? 0
    }

    /// Kills the server at once (its connections are reset); ``start()`` and ``halt()`` wait
    /// for the process to end.
    func stop() {
        guard let process = self.process else { return }
        process.send(SIGKILL)
        process.closeInput()
        self.process = nil
    }

    /// Kills the server at once and waits for the process to end.
    func halt() async {
        self.stop()
        await self.last?.exit()
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
