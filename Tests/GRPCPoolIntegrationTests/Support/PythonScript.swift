import DemoServices
import Foundation
import Testing

/// A script of `Scripts/` run by the tests' Python (`.build-venv`, with grpcio, grpcio-channelz
/// and opentelemetry-proto, which `make test` installs when they are missing).
enum PythonScript {
    /// Starts `Scripts/<script>` with `arguments`.
    static func start(
        _ script: String,
        _ arguments: [String] = [],
        errors: ChildProcess.Output = .discard,
        input: Bool = false
    ) throws -> ChildProcess {
        let python = CoreServer.root.appendingPathComponent(".build-venv/bin/python")
        try #require(
            FileManager.default.isExecutableFile(atPath: python.path),
            "the tests' Python virtual environment is missing: run `make test` (it installs it) or `make pydeps`"
        )
        return try ChildProcess(
            python.path,
            [CoreServer.root.appendingPathComponent("Scripts/\(script)").path] + arguments,
            output: .capture,
            errors: errors,
            input: input
        )
    }

    /// The port a server script prints on its first line (`PORT <n>`) once it listens; the
    /// process is killed after `timeLimit` without it. `nil`, with the line recorded as an
    /// issue naming `what`, when the line is not that.
    static func listeningPort(of process: ChildProcess, what: String, timeLimit: Duration = .seconds(30)) async -> Int?
    {
        let watchdog = Task {
            try await Task.sleep(for: timeLimit)
            process.send(SIGKILL)
        }
        var line: String?
        for await first in process.lines() {
            line = first
            break
        }
        watchdog.cancel()
        guard let line, line.hasPrefix("PORT "), let port = Int(line.dropFirst(5).prefix { $0.isNumber }) else {
            Issue.record("\(what) did not start: \(line ?? "no output")")
            return nil
        }
        return port
    }
}
