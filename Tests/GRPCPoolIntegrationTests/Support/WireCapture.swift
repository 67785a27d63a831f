import DemoServices
import Foundation
import Testing

/// One gRPC length-prefixed message as it crossed the wire, read by Wireshark's HTTP/2 and gRPC
/// dissectors (tshark): its compressed flag and its length on the wire.
struct WireMessage: Sendable, Equatable, CustomStringConvertible {
    var compressed: Bool
    var length: Int

    var description: String { "\(self.compressed ? "gzip" : "plain") \(self.length) B" }
}

/// Captures the gRPC messages sent to `port` on loopback while `body` runs, in the order they went
/// out, until `count` have been seen, leaving out those `ignoring` picks.
///
/// tshark (Debian's `tshark`, which `make test` installs) decodes the port as HTTP/2 from the
/// connection's first bytes: the capture is running before `body` starts, so that the header
/// compression state is complete. tshark stops on its own after `timeLimit` (its `-a duration`),
/// which bounds every wait here; it is interrupted (SIGINT, which stops its capture process too)
/// as soon as the messages are in.
func captureMessages(
    toPort port: Int,
    count: Int,
    timeLimit: Duration = .seconds(60),
    ignoring: @escaping @Sendable (WireMessage) -> Bool = { _ in false },
    during body: () async throws -> Void
) async throws -> [WireMessage] {
    let process = try ChildProcess(
        "/usr/bin/tshark",
        [
            "-i", "lo", "-f", "tcp port \(port)", "-a", "duration:\(timeLimit.components.seconds)", "-l", "-n",
            "-d", "tcp.port==\(port),http2", "-Y", "grpc && tcp.dstport == \(port)",
            "-T", "fields", "-e", "grpc.compressed_flag", "-e", "grpc.message_length",
        ],
        output: .capture,
        errors: .capture
    )
    do {
        let messages = try await WireMessage.read(from: process, count: count, ignoring: ignoring, during: body)
        process.send(SIGINT)
        await process.exit()
        return messages
    } catch {
        process.send(SIGINT)
        await process.exit()
        throw error
    }
}

extension WireMessage {
    /// Waits for the capture to start, runs `body`, then reads `count` messages.
    fileprivate static func read(
        from process: ChildProcess,
        count: Int,
        ignoring: (WireMessage) -> Bool,
        during body: () async throws -> Void
    ) async throws -> [WireMessage] {
        var lines = process.lines().makeAsyncIterator()
        var seen: [String] = []
        // tshark says "Capture started" on its standard error once its capture process runs
        // ("Capturing on …" comes before that, too early).
        while let line = await lines.next() {
            seen.append(line)
            if line.contains("Capture started") { break }
        }
        try #require(seen.last?.contains("Capture started") == true, "tshark did not start capturing: \(seen)")

        try await body()

        var messages: [WireMessage] = []
        while messages.count < count, let line = await lines.next() {
            seen.append(line)
            messages += Self.messages(in: line).filter { !ignoring($0) }
        }
        try #require(messages.count >= count, "tshark saw \(messages.count) of \(count) messages: \(seen.suffix(20))")
        return messages
    }

    /// The messages of one tshark line (`flags<TAB>lengths`, comma-separated when a packet
    /// carries several); none for any other line.
    fileprivate static func messages(in line: String) -> [WireMessage] {
        let fields = line.split(separator: "\t")
        guard fields.count == 2 else { return [] }
        let flags = fields[0].split(separator: ",").compactMap { Int($0) }
        let lengths = fields[1].split(separator: ",").compactMap { Int($0) }
        guard flags.count == lengths.count, !flags.isEmpty else { return [] }
        return zip(flags, lengths).map { WireMessage(compressed: $0 == 1, length: $1) }
    }
}

/// The flow-control window a client announced on a connection to `port`: what tshark's HTTP/2
/// dissector reads from the client's SETTINGS (SETTINGS_INITIAL_WINDOW_SIZE, a new stream's
/// window) and WINDOW_UPDATE frames on stream 0 (the connection's window, from HTTP/2's initial
/// 65,535 bytes), captured while `body` runs.
struct AnnouncedWindows: Sendable {
    /// Every SETTINGS_INITIAL_WINDOW_SIZE the client sent, in order.
    var initialWindowSizes: [Int] = []
    /// The increments of the client's WINDOW_UPDATEs on stream 0 (the connection), in order. One
    /// over 65,535 gives more credit than HTTP/2's initial connection window holds: the window
    /// has grown.
    var connectionIncrements: [Int] = []

    static func capture(
        toPort port: Int,
        timeLimit: Duration = .seconds(60),
        during body: () async throws -> Void
    ) async throws -> AnnouncedWindows {
        let process = try ChildProcess(
            "/usr/bin/tshark",
            [
                // Only what the client sends: the other direction is the bulk of the bytes, which
                // a busy machine's tshark would fall behind on.
                "-i", "lo", "-f", "tcp dst port \(port)", "-a", "duration:\(timeLimit.components.seconds)", "-l",
                "-n", "-d", "tcp.port==\(port),http2", "-Y",
                "(http2.type == 4 || http2.type == 8) && tcp.dstport == \(port)",
                "-T", "fields", "-E", "occurrence=a", "-e", "http2.type", "-e", "http2.streamid",
                "-e", "http2.settings.initial_window_size", "-e", "http2.window_update.window_size_increment",
            ],
            output: .capture,
            errors: .capture
        )
        var lines = process.lines().makeAsyncIterator()
        var seen: [String] = []
        while let line = await lines.next() {
            seen.append(line)
            if line.contains("Capture started") { break }
        }
        guard seen.last?.contains("Capture started") == true else {
            process.send(SIGINT)
            await process.exit()
            throw CaptureError(lines: seen)
        }
        do {
            try await body()
        } catch {
            process.send(SIGINT)
            await process.exit()
            throw error
        }
        process.send(SIGINT)
        let output = await process.output(timeLimit: .seconds(20))
        var windows = AnnouncedWindows()
        for line in output.split(separator: "\n") {
            windows.add(line)
        }
        return windows
    }

    /// One tshark line: `types<TAB>stream ids<TAB>initial window sizes<TAB>increments`, the
    /// lists comma-separated when a packet carries several frames.
    private mutating func add(_ line: Substring) {
        let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map {
            $0.split(separator: ",").compactMap { Int($0) }
        }
        guard fields.count == 4 else { return }
        self.initialWindowSizes += fields[2]
        // Stream ids come one per frame, increments one per WINDOW_UPDATE, both in frame order.
        let updates = zip(fields[0], fields[1]).filter { $0.0 == 8 }.map(\.1)
        for (stream, increment) in zip(updates, fields[3]) where stream == 0 {
            self.connectionIncrements.append(increment)
        }
    }

    struct CaptureError: Error, CustomStringConvertible {
        var lines: [String]
        var description: String { "tshark did not start capturing: \(self.lines)" }
    }
}
