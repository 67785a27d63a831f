internal import Foundation
public import GRPCCore
internal import SwiftProtobuf

/// `demo.STT`: "transcribes" audio bytes (the transcript names the byte count, so a client can
/// check it got the answer to its own request).
public struct SpeechToTextService: STT.SimpleServiceProtocol {
    public init() {}

    public func transcribe(request: TranscribeRequest, context: ServerContext) async throws -> TranscribeResponse {
        .with {
            $0.text =
                "transcript of \(request.audio.count) bytes (\(request.language.isEmpty ? "en" : request.language))"
            $0.confidence = 0.9
        }
    }

    public func streamTranscribe(
        request: RPCAsyncSequence<AudioChunk, any Error>,
        response: RPCWriter<TranscribeResponse>,
        context: ServerContext
    ) async throws {
        var index = 0
        for try await chunk in request {
            index += 1
            try await response.write(.with { $0.text = "partial \(index): \(chunk.audio.count) bytes" })
        }
    }
}

/// `demo.NLP`: splits text into tokens and scores it (+1 per "good", −1 per "bad").
public struct LanguageService: NLP.SimpleServiceProtocol {
    public init() {}

    public func analyze(request: AnalyzeRequest, context: ServerContext) async throws -> AnalyzeResponse {
        let tokens = request.text.split(whereSeparator: { $0.isWhitespace || $0.isPunctuation }).map(String.init)
        let score = tokens.reduce(0) { $0 + ($1.lowercased() == "good" ? 1 : $1.lowercased() == "bad" ? -1 : 0) }
        return .with {
            $0.tokens = tokens
            $0.sentiment = tokens.isEmpty ? 0 : Float(score) / Float(tokens.count)
        }
    }
}

/// `demo.Summary`: keeps the first `max_sentences` sentences.
public struct SummaryService: Summary.SimpleServiceProtocol {
    public init() {}

    static func sentences(_ request: SummarizeRequest) -> [String] {
        let all = request.text.split(separator: ".").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
            !$0.isEmpty
        }
        let limit = request.maxSentences > 0 ? Int(request.maxSentences) : 1
        return all.prefix(limit).map { $0 + "." }
    }

    public func summarize(request: SummarizeRequest, context: ServerContext) async throws -> SummarizeResponse {
        .with { $0.summary = Self.sentences(request).joined(separator: " ") }
    }

    public func summarizeStream(
        request: SummarizeRequest,
        response: RPCWriter<SummarizeResponse>,
        context: ServerContext
    ) async throws {
        for sentence in Self.sentences(request) {
            try await response.write(.with { $0.summary = sentence })
        }
    }
}
