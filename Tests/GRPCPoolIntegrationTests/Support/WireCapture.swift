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
/// out, until `count` have been seen.
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
        let messages = try await WireMessage.read(from: process, count: count, during: body)
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
            messages += Self.messages(in: line)
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
