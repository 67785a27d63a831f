internal import CoreMetrics
internal import Foundation
internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Logging

/// Following the `etcd:` endpoints: read each prefix, then watch it, and move the connections
/// when the backends change, as a DNS change does.
extension ConnectionPool {
    /// Reads every `etcd:` prefix once, before the monitors start, so that the connections
    /// connect to the backends registered; a prefix that cannot be read is read by its follower.
    func readRegistries() async -> [Int: RegistryState] {
        guard let registry = self.registry else { return [:] }
        var states: [Int: RegistryState] = [:]
        for (index, prefix) in self.addressBook.withLock({ $0.registries }) {
            var state = RegistryState(prefix: prefix)
            let keys = state.prefix
            let read = await self.clock.withTimeLimit(registry.config.requestTimeout) {
                try? await registry.range(prefix: keys)
            }
            if let (pairs, revision) = read ?? nil {
                let skipped = state.load(pairs, revision: revision)
                self.publish(state, endpoint: index, skipped: skipped, beforeStart: true)
            }
            states[index] = state
        }
        return states
    }

    /// Follows endpoint `index`'s prefix from `state` on until cancelled: reads it whole when
    /// it must (at first, and after etcd compacted the history), then watches it from the
    /// revision after the last one seen. Each failure — no member answers, the member watched
    /// went away — keeps the backends as they are, says so (a `resolutionFailed` event, the
    /// resolution failures counter, a warning), and tries again after a backoff, on whichever
    /// member the pool to the cluster picks.
    func follow(endpoint index: Int, from state: RegistryState) async {
        guard let registry = self.registry else { return }
        let state = Locked(state)
        let backoff = Backoff(
            initial: registry.config.retryInitial,
            maximum: registry.config.retryMaximum,
            fastAttempts: 0
        )
        // Attempts that failed since the cluster last answered: the backoff's attempt number.
        let failures = Locked(0)
        let answered: @Sendable () -> Void = {
            let failed = failures.withLock { count in
                defer { count = 0 }
                return count
            }
            guard failed > 0 else { return }
            self.logger.info(
                "etcd reachable again",
                metadata: ["grpc.pool.endpoint": "\(self.config.endpoints[index])"]
            )
        }
        while !Task.isCancelled {
            do {
                if state.withLock({ $0.needsSnapshot }) {
                    let prefix = state.withLock { $0.prefix }
                    let (pairs, revision) = try await registry.range(prefix: prefix)
                    answered()
                    let (current, skipped) = state.withLock { state in
                        let skipped = state.load(pairs, revision: revision)
                        return (state, skipped)
                    }
                    self.publish(current, endpoint: index, skipped: skipped)
                }
                let (prefix, revision) = state.withLock { ($0.prefix, $0.revision) }
                try await registry.watch(prefix: prefix, from: revision + 1) { response in
                    answered()
                    try self.receive(response, into: state, endpoint: index)
                }
            } catch {
                if Task.isCancelled { return }
                // A compaction is not a failure: read the prefix again at once.
                if state.withLock({ $0.needsSnapshot }), error is EtcdClient.WatchEnded { continue }
                let attempt = failures.withLock {
                    $0 += 1
                    return $0
                }
                if Self.isAuthenticationFailure(error) { registry.forgetToken() }
                self.addressBook.withLock { $0.failures += 1 }
                self.resolutionFailureCounter.increment()
                self.events.emit(
                    .resolutionFailed(
                        endpoint: self.config.endpoints[index].description,
                        reason: "etcd unreachable (\(error)); keeping the last backends"
                    )
                )
                do { try await self.clock.sleep(for: backoff.delay(attempt: attempt)) } catch { return }
            }
        }
    }

    /// One watch response: its changes applied and published. A watch etcd cancelled ends the
    /// stream (after a compaction, the prefix is read whole again; otherwise the watch starts
    /// again after the backoff).
    private func receive(
        _ response: Etcdserverpb_WatchResponse,
        into state: Locked<RegistryState>,
        endpoint index: Int
    ) throws {
        if response.canceled || response.compactRevision > 0 {
            if response.compactRevision > 0 { state.withLock { $0.compacted() } }
            let reason =
                response.cancelReason.isEmpty ? "compacted at \(response.compactRevision)" : response.cancelReason
            throw EtcdClient.WatchEnded(description: "etcd cancelled the watch: \(reason)")
        }
        if response.events.isEmpty {
            if !response.created { state.withLock { $0.progressed(to: response.header.revision) } }
            return
        }
        let changes = response.events.map { event -> RegistryState.Change in
            let key = String(decoding: event.kv.key, as: UTF8.self)
            switch event.type {
            case .delete: return .delete(key: key, revision: event.kv.modRevision)
            default: return .put(key: key, value: event.kv.value, revision: event.kv.modRevision)
            }
        }
        let (current, skipped) = state.withLock { state in
            let skipped = state.apply(changes)
            return (state, skipped)
        }
        self.publish(current, endpoint: index, skipped: skipped)
    }

    /// Hands what `state` holds to the address book; where that changed the addresses, plans
    /// the connections again. Skipped keys are logged, each by name.
    private func publish(
        _ state: RegistryState,
        endpoint index: Int,
        skipped: [RegistryState.Skipped],
        beforeStart: Bool = false
    ) {
        let endpoint = self.config.endpoints[index]
        for key in skipped {
            self.logger.warning(
                "etcd key skipped",
                metadata: [
                    "grpc.pool.endpoint": "\(endpoint)", "grpc.pool.etcd_key": "\(key.key)",
                    "grpc.pool.reason": "\(key.reason)",
                ]
            )
        }
        let placements = state.addresses.map { Placement(address: $0, endpoint: endpoint, authority: nil) }
        if self.addressBook.withLock({ $0.update(endpoint: index, to: placements) }) {
            self.events.emit(.resolved(endpoint: endpoint.description, addresses: placements.map(\.address)))
            self.rebalance(beforeStart: beforeStart)
        }
    }

    private static func isAuthenticationFailure(_ error: any Error) -> Bool {
        guard let error = error as? RPCError else { return false }
        return error.code == .unauthenticated || error.message.contains("invalid auth token")
    }
}
