internal import GRPCCore
internal import GRPCPoolCoreBridge

/// A streaming RPC that the pool retries itself, as it does unary ones (gRFC A6).
///
/// Until the server's first response part arrives, the request parts written so far are kept
/// (at most ``ReplayBuffer/limit`` bytes of messages). When the server refuses the attempt — a status
/// with nothing before it — with a code the retry policy allows, the same request goes out again
/// on a connection picked anew: the kept parts are replayed, and parts written meanwhile follow
/// them in order. The first response part commits the RPC to its attempt and drops the parts.
///
/// GRPCCore's own retry executor would do this from above, but its attempt waits for the request
/// producer to end even after the response has ended: a stream whose server ends it first would
/// not return until the caller's producer ends or the deadline passes.
final class RetryingCoreStream: Sendable {
    /// Opens the next attempt in a slot, with the RPC's remaining time.
    typealias Open =
        @Sendable (_ slot: PooledConnection.CallSlot, _ timeout: Duration?, _ attempt: Int) -> Result<
            CoreStream, RPCError
        >

    /// What sends the request again: the retry decision, and where the next attempt goes.
    struct Retrier: Sendable {
        var retry: CallRetry
        let pick: PooledConnection.RetryPick
        let open: Open
        /// What the backoff between attempts waits on: the pool's clock.
        let clock: any PoolClock
    }

    let state: Locked<State>

    struct State: Sendable {
        var current: Result<CoreStream, RPCError>
        var retrier: Retrier
        var buffer = ReplayBuffer()
    }

    init(first: Result<CoreStream, RPCError>, retrier: Retrier) {
        self.state = Locked(State(current: first, retrier: retrier))
    }

    // MARK: - Request side

    func write(_ part: RPCRequestPart<[UInt8]>) async throws {
        let target = self.state.withLock { state -> CoreStream? in
            state.buffer.keep(part) ? nil : try? state.current.get()
        }
        try await target?.write(part)
    }

    func finish() async {
        if Task.isCancelled { return self.fail(RPCError(code: .cancelled, message: "the RPC was cancelled")) }
        let target = self.state.withLock { state -> CoreStream? in
            state.buffer.endRequest() ? nil : try? state.current.get()
        }
        await target?.finish()
    }

    /// The request producer failed: the RPC ends with its error, or is cancelled.
    func finish(throwing error: any Error) {
        self.fail(RPCError(requestStreamFailure: error))
    }

    /// Ends the RPC with `error` now: no retry follows.
    func fail(_ error: RPCError) {
        let target = self.state.withLock { state -> CoreStream? in
            state.buffer.commit()
            return try? state.current.get()
        }
        target?.fail(error)
    }

    // MARK: - Retries

    /// The attempt the response is read from.
    var current: Result<CoreStream, RPCError> { self.state.withLock { $0.current } }

    /// The RPC is committed to its current attempt: its parts are no longer kept.
    func commit() {
        self.state.withLock { $0.buffer.commit() }
    }

    /// Sends the request again after a refusal with `status`, once its backoff has passed and a
    /// slot is found; `false` when the RPC ends with `status`.
    func retry(after status: CallStatus) async -> Bool {
        let decision = self.state.withLock { state -> (CallRetry.Decision, Retrier)? in
            guard !state.buffer.committed else { return nil }
            let decision = state.retrier.retry.next(after: status, now: .now, random: .random(in: 0..<1))
            return (decision, state.retrier)
        }
        guard let (decision, retrier) = decision, case .retry(let delay) = decision else { return false }
        do { try await retrier.clock.sleep(for: delay) } catch { return false }
        let remaining = retrier.retry.deadline.map { ContinuousClock.now.duration(to: $0) }
        if let remaining, remaining <= .zero { return false }
        guard let slot = await retrier.pick(remaining) else { return false }
        let next = retrier.open(slot, remaining, retrier.retry.attempts)
        let accepted = self.state.withLock { state -> Bool in
            guard !state.buffer.committed else { return false }
            // An attempt that could not open takes no replay: its failure is read next.
            if case .success = next { _ = state.buffer.startReplay() }
            state.current = next
            return true
        }
        guard accepted else {
            // Failed meanwhile: the new attempt ends unused.
            if case .success(let stream) = next { stream.close(throwing: CancellationError()) }
            return false
        }
        if case .success(let stream) = next { await self.replay(into: stream) }
        return true
    }

    /// Sends the kept parts to `stream` in order, then those written meanwhile, then the
    /// half-close if the request has ended; the writer takes over once none is left.
    private func replay(into stream: CoreStream) async {
        while true {
            switch self.state.withLock({ $0.buffer.nextReplayStep() }) {
            case .send(let part): try? await stream.write(part)
            case .finish: return await stream.finish()
            case .done: return
            }
        }
    }

    /// The RPC is over for the transport: the current attempt's end is recorded.
    func close(throwing error: (any Error)?) {
        if case .success(let stream) = self.current { stream.close(throwing: error) }
    }
}

/// The request parts a streaming RPC keeps for a retry, and the replay that sends them to the
/// next attempt. Parts written while a replay runs are kept for it, so they follow in order.
struct ReplayBuffer: Sendable {
    /// Message bytes kept at most; past it the RPC is no longer retried (gRFC A6's default
    /// per-RPC retry buffer).
    let limit: Int
    private(set) var parts: [RPCRequestPart<[UInt8]>] = []
    private(set) var bytes = 0
    /// The request has ended (half-close).
    private(set) var requestEnded = false
    /// No retry any more: a response part arrived, the buffer overflowed, or the RPC failed.
    private(set) var committed = false
    /// A replay is sending the parts to a new attempt.
    private(set) var replaying = false
    /// Parts the running replay has sent.
    private var replayed = 0

    init(limit: Int = 256 << 10) {
        self.limit = limit
    }

    enum ReplayStep: Equatable {
        case send(RPCRequestPart<[UInt8]>)
        /// Every part is sent and the request has ended: half-close.
        case finish
        /// Every part is sent: the writer takes over.
        case done
    }

    /// Keeps `part` while the RPC may be retried; whether the replay sends it (else the writer
    /// sends it to the current attempt).
    mutating func keep(_ part: RPCRequestPart<[UInt8]>) -> Bool {
        guard !self.committed || self.replaying else { return false }
        self.parts.append(part)
        if case .message(let message) = part {
            self.bytes += message.count
            if self.bytes > self.limit { self.committed = true }
        }
        if self.committed && !self.replaying { self.drop() }
        return self.replaying
    }

    /// The request ended; whether the replay half-closes (else the writer does).
    mutating func endRequest() -> Bool {
        self.requestEnded = true
        return self.replaying
    }

    /// No retry from now on; a running replay still sends what it has.
    mutating func commit() {
        self.committed = true
        if !self.replaying { self.drop() }
    }

    /// A new attempt takes the parts; `false` once committed.
    mutating func startReplay() -> Bool {
        guard !self.committed else { return false }
        self.replaying = true
        self.replayed = 0
        return true
    }

    mutating func nextReplayStep() -> ReplayStep {
        if self.replaying, self.replayed < self.parts.count {
            defer { self.replayed += 1 }
            return .send(self.parts[self.replayed])
        }
        self.replaying = false
        if self.committed { self.drop() }
        return self.requestEnded ? .finish : .done
    }

    private mutating func drop() {
        self.parts = []
        self.bytes = 0
    }
}

extension RetryingCoreStream: TransportCoreStream, StreamRequestSide {
    var writer: StreamWriter<RetryingCoreStream> { StreamWriter(stream: self) }
    var responseParts: ResponseParts { ResponseParts(stream: self) }

    /// The response parts of the attempt the RPC commits to: a refused attempt's status is not
    /// passed on while a retry follows it.
    struct ResponseParts: AsyncSequence, Sendable {
        typealias Element = RPCResponsePart<[UInt8]>
        typealias Failure = any Error
        let stream: RetryingCoreStream

        func makeAsyncIterator() -> Iterator { Iterator(stream: self.stream) }

        struct Iterator: AsyncIteratorProtocol {
            let stream: RetryingCoreStream
            /// The committed attempt's parts, after the first.
            private var committed: CoreStream.ResponseParts.Iterator?
            private var done = false

            init(stream: RetryingCoreStream) {
                self.stream = stream
            }

            mutating func next() async throws -> RPCResponsePart<[UInt8]>? {
                if self.committed != nil { return try await self.committed!.next() }
                guard !self.done else { return nil }
                while true {
                    switch self.stream.current {
                    case .failure(let error):
                        let status = CallStatus(
                            code: Status.Code(error.code),
                            message: error.message,
                            trailingMetadata: error.metadata
                        )
                        if await self.stream.retry(after: status) { continue }
                        self.done = true
                        return .status(Status(code: status.code, message: status.message), error.metadata)
                    case .success(let attempt):
                        var parts = attempt.responseParts.makeAsyncIterator()
                        let first = try await parts.next()
                        if case .status(let status, let metadata) = first, status.code != .ok,
                            await self.stream.retry(
                                after: CallStatus(
                                    code: status.code,
                                    message: status.message,
                                    trailingMetadata: metadata
                                )
                            )
                        {
                            continue
                        }
                        self.stream.commit()
                        self.committed = parts
                        return first
                    }
                }
            }
        }
    }
}
