internal import CGRPCCore
internal import GRPCCore

/// The ceiling of this stack for benchmarks: unary calls chained from the poller thread itself,
/// with no Swift task, continuation or executor hop on the path — each completion starts the
/// next call of its chain directly.
package enum CoreBenchLoop {
    /// Runs `concurrency` chains of unary calls for `duration`, or until `calls` have started.
    ///
    /// - Returns: the latency of every completed call, and how many failed.
    package static func run(
        channel: CoreChannel,
        method: String,
        payload: [UInt8],
        concurrency: Int,
        duration: Duration,
        calls limit: Int = .max
    ) async -> (latencies: [Duration], failures: Int) {
        let deadline = ContinuousClock.now.advanced(by: duration)
        let state = Locked<(latencies: [Duration], failures: Int, running: Int, started: Int)>(([], 0, concurrency, 0))
        state.withLock { $0.latencies.reserveCapacity(min(limit, 1 << 20)) }
        return await withCheckedContinuation { (continuation: CheckedContinuation<([Duration], Int), Never>) in
            @Sendable func next() {
                let start = ContinuousClock.now
                // Without a limit the chains take no extra lock: (e) stays what it measured before.
                let admitted =
                    limit == .max
                    || state.withLock { value -> Bool in
                        guard value.started < limit else { return false }
                        value.started += 1
                        return true
                    }
                guard admitted, start < deadline,
                    let call = channel.handle.createCall(
                        method: method,
                        authority: nil,
                        deadline: CoreCallOptions(timeout: .seconds(30)).deadline
                    )
                else {
                    let done = state.withLock { value -> ([Duration], Int)? in
                        value.running -= 1
                        return value.running == 0 ? (value.latencies, value.failures) : nil
                    }
                    if let done { continuation.resume(returning: done) }
                    return
                }
                UnaryBatch.start(on: call, request: payload, metadata: [:], options: CoreCallOptions()) { outcome in
                    let latency = ContinuousClock.now - start
                    state.withLock { value in
                        if outcome.status.code == .ok { value.latencies.append(latency) } else { value.failures += 1 }
                    }
                    next()
                }
            }
            for _ in 0..<concurrency { next() }
        }
    }
}
