internal import GRPCCore
internal import GRPCPoolCoreBridge

/// A unary RPC of a `ClientTransport` stream: the request parts are collected, and when the
/// request ends the whole call goes out as one batch of six ops (the cheapest shape the core has).
///
/// With a ``Retrier``, a failure its ``CallRetry`` allows is sent again, the same request, on a
/// connection picked anew (gRFC A6): the pool already holds the one message, so GRPCCore's retry
/// executor, which buffers the request for replay, is not needed for unary methods. Each
/// attempt is recorded on its connection as it ends, before the caller sees the response.
final class UnaryCoreStream: Sendable {
    /// One attempt: a started call slot of a connection, and its core call (or why there is
    /// none: the channel closed under the pick).
    struct Attempt: Sendable {
        let connection: PooledConnection
        let started: PooledConnection.StartedCall
        let call: Result<CoreCall, RPCError>
    }

    /// What sends the request again: the retry decision, and where the next attempt goes.
    struct Retrier: Sendable {
        var retry: CallRetry
        let method: String
        let options: CoreCallOptions
        /// A slot for the next attempt, waiting at most the given time: the pool's pick, or the
        /// connection the caller holds; `nil` when there is none (the RPC then ends with the last
        /// attempt's status).
        let pick: @Sendable (_ timeLimit: Duration?) async -> PooledConnection.CallSlot?
        /// What the backoff between attempts waits on: the pool's clock.
        let clock: any PoolClock
    }

    let maxRequestBytes: Int?
    let maxResponseBytes: Int?
    private let state: Locked<State>

    private struct State: Sendable {
        var metadata: Metadata = [:]
        var message: [UInt8]?
        var requestEnded = false
        /// The attempt whose end is not recorded yet.
        var attempt: Attempt?
        /// Whether the current attempt's batch went out.
        var sent = false
        /// The current attempt's outcome, once it ended.
        var outcome: UnaryOutcome?
        var waiters = WaiterQueue<Finished>()
        var retrier: Retrier?
    }

    init(first attempt: Attempt, retrier: Retrier?, maxRequestBytes: Int?, maxResponseBytes: Int?) {
        self.maxRequestBytes = maxRequestBytes
        self.maxResponseBytes = maxResponseBytes
        self.state = Locked(State(attempt: attempt, retrier: retrier))
    }

    // MARK: - Request side

    func write(_ part: RPCRequestPart<[UInt8]>) throws {
        switch part {
        case .metadata(let metadata):
            self.state.withLock { $0.metadata = metadata }
        case .message(let message):
            if let limit = self.maxRequestBytes, message.count > limit {
                throw RPCError(
                    code: .resourceExhausted,
                    message: "request message of \(message.count) bytes exceeds the limit of \(limit) bytes"
                )
            }
            let duplicate = self.state.withLock { state -> Bool in
                defer { state.message = message }
                return state.message != nil
            }
            if duplicate {
                self.complete(
                    UnaryOutcome(failure: RPCError(code: .internalError, message: "a unary request has one message"))
                )
            }
        }
    }

    /// The request is complete: the first attempt goes out (read and marked sent in the same
    /// step that ends the request).
    func finish() {
        let request: (first: Attempt?, metadata: Metadata, message: [UInt8]?)? = self.state.withLock { state in
            guard !state.requestEnded, state.outcome == nil else { return nil }
            state.requestEnded = true
            state.sent = state.message != nil && state.attempt != nil
            return (state.attempt, state.metadata, state.message)
        }
        guard let request else { return }
        guard let message = request.message, let first = request.first else {
            // Never send a unary request without its message: the server would answer an empty one.
            // A request writer that was cancelled ends that way (GRPCCore's replay buffer ends the
            // sequence for a cancelled subscriber): that is a cancellation, not a protocol error.
            let error =
                Task.isCancelled
                ? RPCError(code: .cancelled, message: "the unary request was cancelled before its message was written")
                : RPCError(code: .internalError, message: "the unary request ended without a message")
            self.complete(UnaryOutcome(failure: error))
            return
        }
        self.send(first, metadata: request.metadata, message: message)
    }

    /// Sends the request again, on a retry's `attempt`.
    private func resend(_ attempt: Attempt) {
        let request: (Metadata, [UInt8])? = self.state.withLock { state in
            guard state.outcome == nil, let message = state.message else { return nil }
            state.sent = true
            return (state.metadata, message)
        }
        guard let (metadata, message) = request else { return }
        self.send(attempt, metadata: metadata, message: message)
    }

    private func send(_ attempt: Attempt, metadata: Metadata, message: [UInt8]) {
        switch attempt.call {
        case .success(let call):
            var metadata = metadata
            attempt.started.trace?.inject(into: &metadata)
            call.startUnary(metadata: metadata, message: message) { self.complete($0) }
        case .failure(let error): self.complete(UnaryOutcome(failure: error))
        }
    }

    /// Ends the current attempt with `error` now: its call is cancelled if it went out.
    func fail(_ error: RPCError) {
        let (attempt, sent) = self.state.withLock { ($0.attempt, $0.sent) }
        if sent, case .success(let call) = attempt?.call {
            call.cancel()
        } else {
            self.complete(UnaryOutcome(failure: error))
        }
    }

    /// An attempt's outcome, and the attempt itself for its waiter to record (taken from the
    /// state in the step that hands the outcome over, so that it is recorded once).
    struct Finished: Sendable {
        var outcome: UnaryOutcome
        var attempt: Attempt?
    }

    private func complete(_ outcome: UnaryOutcome) {
        let (waiters, attempt) = self.state.withLock { state -> (Resumption<Finished>, Attempt?) in
            guard state.outcome == nil else { return (.none, nil) }
            state.outcome = outcome
            let waiters = state.waiters.removeAll()
            guard !waiters.isEmpty else { return (waiters, nil) }
            defer { state.attempt = nil }
            return (waiters, state.attempt)
        }
        waiters.resume(returning: Finished(outcome: outcome, attempt: attempt))
    }

    // MARK: - Response side

    /// The RPC's outcome: the first attempt's, or the last retry's. Each attempt is recorded on
    /// its connection as its outcome arrives, before the caller has it.
    ///
    /// Not inlined into the parts' iterator: its `next()` runs four times per RPC, and each run
    /// would allocate the frames of this wait.
    @inline(never)
    func response() async -> UnaryOutcome {
        var outcome = await self.attemptOutcome()
        // OK ends the RPC without the lock or another async frame: the common case.
        while outcome.status.code != .ok, let next = await self.nextAttempt(after: outcome) {
            self.resend(next)
            outcome = await self.attemptOutcome()
        }
        return outcome
    }

    /// The current attempt's outcome, recorded. A cancelled task ends the wait with CANCELLED;
    /// the transport's own cancellation handler (around the whole RPC) cancels the call.
    private func attemptOutcome() async -> UnaryOutcome {
        let finished = await self.state.wait(
            in: \.waiters,
            until: { state in
                guard let outcome = state.outcome else { return nil }
                defer { state.attempt = nil }
                return Finished(outcome: outcome, attempt: state.attempt)
            },
            // The attempt stays in the state: `close()` records it.
            cancelled: Finished(
                outcome: UnaryOutcome(failure: RPCError(code: .cancelled, message: "the RPC was cancelled")),
                attempt: nil
            )
        )
        if let attempt = finished.attempt {
            // The request's size, for the standard metrics only: the lock is not taken otherwise.
            let sent = attempt.connection.standardMetrics.enabled ? self.state.withLock { $0.message?.count ?? 0 } : 0
            attempt.connection.endCall(
                attempt.started,
                error: finished.outcome.status.error,
                sent: sent,
                received: finished.outcome.message?.count ?? 0
            )
        }
        return finished.outcome
    }

    /// The next attempt after `outcome`, once its backoff has passed and it has a connection;
    /// `nil` when the RPC ends with `outcome`.
    private func nextAttempt(after outcome: UnaryOutcome) async -> Attempt? {
        let decision = self.state.withLock { state -> (CallRetry.Decision, Retrier)? in
            guard var retrier = state.retrier else { return nil }
            let decision = retrier.retry.next(after: outcome.status, now: .now, random: .random(in: 0..<1))
            state.retrier = retrier
            return (decision, retrier)
        }
        guard let (decision, retrier) = decision, case .retry(let delay) = decision else { return nil }
        do { try await retrier.clock.sleep(for: delay) } catch { return nil }
        let remaining = retrier.retry.deadline.map { ContinuousClock.now.duration(to: $0) }
        if let remaining, remaining <= .zero { return nil }
        guard let slot = await retrier.pick(remaining) else { return nil }
        var options = retrier.options
        options.timeout = remaining
        let attempt = Attempt(slot, method: retrier.method, options: options, attempt: retrier.retry.attempts)
        self.state.withLock { state in
            state.attempt = attempt
            state.outcome = nil
            state.sent = false
        }
        return attempt
    }

    /// The RPC is over for the transport: an attempt not recorded yet (the response was never
    /// read, or the caller left first) is cancelled and recorded now.
    func close() {
        let (attempt, outcome) = self.state.withLock { state in
            defer { state.attempt = nil }
            return (state.attempt, state.outcome)
        }
        guard let attempt else { return }
        if outcome == nil, case .success(let call) = attempt.call { call.cancel() }
        let error =
            outcome?.status.error ?? RPCError(code: .cancelled, message: "the RPC ended before its status arrived")
        attempt.connection.endCall(attempt.started, error: error)
    }
}
