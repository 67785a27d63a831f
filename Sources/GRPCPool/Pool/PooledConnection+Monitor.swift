internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Logging
internal import SwiftProtobuf

extension PooledConnection {
    private enum Event: Sendable {
        case connectivity(ChannelConnectivity, generation: Int)
        case check
        case retry(episode: Int, attempt: Int)
        case command(PooledConnection.Command)
        case restore(ejection: Int)
        case refresh
        case drained(generation: Int)
    }

    /// Connects, then keeps the connection healthy until the task is cancelled.
    ///
    /// - It follows the channel's connectivity: leaving `ready` takes the connection out of
    ///   rotation at once; a channel that went idle is asked to reconnect (pooled connections
    ///   stay warm); coming back to `ready` (after a health check, if configured) puts it back.
    /// - It checks health every `healthCheck.interval`, and at once when a call failed with
    ///   UNAVAILABLE.
    /// - An unhealthy connection starts a recovery episode: attempts at ``Backoff`` delays. A
    ///   channel that has lost its connection is left to the core, which reconnects it with
    ///   exponential backoff from `retryDelay` to `maxRetryDelay` (an idle one is asked to
    ///   connect); only a channel that is connected but fails its checks (unresponsive), or was
    ///   shut down, is replaced: a new channel is connected, checked, and swapped in, and the old
    ///   one drains. After `maxRetries` attempts it logs that it settles on `maxRetryDelay`.
    func monitor() async {
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        let backoff = Backoff(
            initial: self.config.retryDelay,
            maximum: self.config.maxRetryDelay,
            fastAttempts: self.config.maxRetries
        )
        await withDiscardingTaskGroup { group in
            func follow(_ channel: CoreChannel, generation: Int) {
                group.addTask {
                    for await state in channel.connectivityUpdates() {
                        sink.yield(.connectivity(state, generation: generation))
                    }
                }
            }
            func yield(_ event: Event, after delay: Duration) {
                group.addTask {
                    do {
                        try await Task.sleep(for: delay)
                        sink.yield(event)
                    } catch {}
                }
            }
            func schedule(episode: Int, attempt: Int) -> Duration {
                let delay = backoff.delay(attempt: attempt)
                yield(.retry(episode: episode, attempt: attempt), after: delay)
                return delay
            }

            let (generation, channel) = self.currentGeneration
            follow(channel, generation: generation)
            let interval = self.config.healthCheck.interval
            group.addTask {
                while !Task.isCancelled {
                    do { try await Task.sleep(for: interval) } catch { return }
                    sink.yield(.check)
                }
            }
            group.addTask {
                for await _ in self.checkRequestStream { sink.yield(.check) }
            }
            group.addTask { await self.keepServerAnswering(requestingChecks: sink) }
            group.addTask {
                for await command in self.commandStream { sink.yield(.command(command)) }
            }
            if let age = self.config.maxConnectionAge {
                group.addTask {
                    while true {
                        do { try await Task.sleep(for: age * Double.random(in: 0.9...1.1)) } catch { return }
                        sink.yield(.refresh)
                    }
                }
            }
            // An inactive connection (beyond the pool's working set) connects when activated.
            if self.isActive {
                self.emit(.connecting)
                _ = channel.state(tryToConnect: true)
            }

            var episode = 0
            /// Whether the current channel was ready when its state last changed: leaving ready is
            /// a disconnection, failing before it a failed attempt.
            var wasReady = false
            var recovering = false
            var ejection = 0

            /// Puts a connected, checked channel in place of the current one; the old one's calls
            /// (they picked it already) finish, or reach the usual deadline, before it goes.
            func swapIn(_ replacement: CoreChannel, reason: String) {
                let (generation, old) = self.replaceChannel(with: replacement)
                wasReady = true
                let drainLimit = self.config.timeout
                Task { await old.drainAndClose(timeLimit: drainLimit) }
                follow(replacement, generation: generation)
                self.emit(.refreshed(reason: reason))
            }

            func apply(_ probe: HealthProbe) {
                switch probe {
                case .pending:
                    // Connecting: out of rotation until it is ready, but no recovery episode yet.
                    self.setHealthy(false)
                case .healthy:
                    // An ejected connection comes back only when its ejection time is over.
                    guard !self.isEjected else {
                        recovering = false
                        return
                    }
                    if recovering {
                        self.logger.info("connection recovered")
                    }
                    recovering = false
                    self.setHealthy(true)
                case .unhealthy where !self.isActive:
                    // Outside the working set: nothing to repair until it is activated.
                    self.setHealthy(false)
                case .unhealthy(let reason, _):
                    let wasHealthy = self.isHealthy
                    self.setHealthy(false)
                    self.recordError(reason)
                    if wasHealthy || !recovering {
                        self.logger.info("health check failed", metadata: ["grpc.pool.reason": "\(reason)"])
                    }
                    if !recovering {
                        recovering = true
                        episode += 1
                        let delay = schedule(episode: episode, attempt: 1)
                        self.logger.info(
                            "reconnection attempt 1 scheduled",
                            metadata: ["grpc.pool.delay_ms": "\(Int(delay.milliseconds))"]
                        )
                    }
                }
            }

            for await event in events {
                switch event {
                case .connectivity(let state, let generation):
                    guard self.connectivityChanged(state, generation: generation) else { continue }
                    self.logger.debug("connectivity changed", metadata: ["grpc.pool.state": "\(state)"])
                    if state != .ready, wasReady {
                        self.emit(.disconnected(reason: "\(state)"))
                    } else if state == .transientFailure {
                        self.emit(.failed(reason: "connection attempt failed"))
                    }
                    wasReady = state == .ready
                    switch state {
                    case .ready:
                        self.emit(.connected)
                        apply(await self.probe())
                    case .idle:
                        // Lost (or idle-timed-out): out of rotation until it is ready again.
                        self.setHealthy(false)
                        if self.isActive { _ = self.channel.state(tryToConnect: true) }
                    case .connecting:
                        continue
                    case .transientFailure, .shutdown:
                        apply(.unhealthy(reason: "connection lost (\(state))", replace: true))
                    }

                case .check:
                    apply(await self.probe())

                case .retry(let attemptEpisode, let attempt):
                    guard recovering, attemptEpisode == episode else { continue }
                    // Recovered by itself (the core reconnects the channel on its own)?
                    let state = self.channel.state()
                    if state == .ready, await self.probe() == .healthy {
                        apply(.healthy)
                        continue
                    }
                    let phase =
                        attempt <= self.config.maxRetries
                        ? "\(attempt) of \(self.config.maxRetries)" : "\(attempt) (at the capped interval)"
                    switch state {
                    case .connecting, .transientFailure:
                        // The core is reconnecting it, backing off from retryDelay to
                        // maxRetryDelay; a second channel would only add connection attempts.
                        self.logger.info("reconnection attempt \(phase): the channel is reconnecting (\(state))")
                    case .idle:
                        self.logger.info("reconnection attempt \(phase): asking the idle channel to connect")
                        _ = self.channel.state(tryToConnect: true)
                    case .ready, .shutdown:
                        // Connected but failing its checks (unresponsive), or shut down under us.
                        self.logger.info("reconnection attempt \(phase): connecting a new channel")
                        if let replacement = await self.connectReplacement() {
                            swapIn(replacement, reason: "unresponsive (reconnection attempt \(attempt))")
                            apply(.healthy)
                            continue
                        }
                    }
                    if attempt == self.config.maxRetries {
                        self.logger.info(
                            "reconnection attempts exhausted; retrying every \(self.config.maxRetryDelay) until it recovers"
                        )
                    }
                    let delay = schedule(episode: episode, attempt: attempt + 1)
                    self.logger.info(
                        "reconnection attempt \(attempt + 1) scheduled",
                        metadata: ["grpc.pool.delay_ms": "\(Int(delay.milliseconds))"]
                    )

                case .command(.activate):
                    // Into the working set: a fresh channel if the last one was closed, then the
                    // usual path (ready, checked, in rotation).
                    if self.channel.state() == .shutdown, let fresh = try? self.makeChannel() {
                        let (generation, _) = self.replaceChannel(with: fresh)
                        follow(fresh, generation: generation)
                    }
                    self.logger.info("connection activated")
                    self.emit(.connecting)
                    _ = self.channel.state(tryToConnect: true)
                    apply(await self.probe())

                case .command(.deactivate):
                    // Out of the working set: no new calls (the pool no longer picks it); the
                    // channel closes once the calls on it have finished, or at the usual deadline.
                    self.setHealthy(false)
                    recovering = false
                    let generation = self.currentGeneration.0
                    let limit = self.config.timeout
                    group.addTask {
                        await self.waitUntilUnloaded(timeLimit: limit)
                        sink.yield(.drained(generation: generation))
                    }

                case .drained(let generation):
                    guard !self.isActive, generation == self.currentGeneration.0 else { continue }
                    self.closeChannel()
                    self.emit(.drained)

                case .command(.eject):
                    // The outlier detector took it out of rotation (its calls kept failing while
                    // others' succeeded): replace the channel now, and look again after the
                    // ejection time.
                    ejection += 1
                    let time = self.config.outlierDetection?.ejectionTime ?? self.config.retryDelay
                    yield(.restore(ejection: ejection), after: time)
                    let failures = self.failuresInARow
                    self.recordError("ejected after \(failures) failed calls in a row")
                    self.emit(.ejected(failures: failures, ejectionTime: time))
                    if let replacement = await self.connectReplacement() {
                        swapIn(replacement, reason: "ejected")
                    }

                case .refresh:
                    // Make before break: the new channel is connected and checked before it takes
                    // the old one's place. An unhealthy or ejected connection is being repaired
                    // already; an inactive one has no connection to refresh.
                    guard self.isHealthy, self.isActive, !self.isEjected else { continue }
                    if let replacement = await self.connectReplacement() {
                        swapIn(replacement, reason: "maxConnectionAge")
                    }

                case .restore(let restoring):
                    guard restoring == ejection, self.isEjected else { continue }
                    self.endEjection()
                    let probe = await self.probe()
                    if probe == .healthy {
                        self.emit(.restored)
                    }
                    apply(probe)
                }
            }
            group.cancelAll()
        }
    }

    /// Sends one small RPC on the connection every 2 × `keepaliveTime`, whatever else it
    /// carries, so that the server writes to it at least that often.
    ///
    /// A server forgives keepalive pings whenever it sends headers or data (gRFC A8), and a
    /// server with default settings allows a ping without data only every 5 minutes, with two
    /// strikes: a connection that only pings every `keepaliveTime` (an idle one, or one carrying
    /// a quiet long-lived stream) draws GOAWAY `too_many_pings` after its fourth ping, and its
    /// streams fail. With an answered RPC between every two pings, no ping is ever a third strike.
    /// The RPC is `grpc.health.v1.Health/Check` (for the configured service name, or ""): any
    /// answer, UNIMPLEMENTED included, counts; no answer within `keepaliveTimeout` asks the
    /// monitor for a check.
    private func keepServerAnswering(requestingChecks sink: AsyncStream<Event>.Continuation) async {
        let interval = self.config.keepaliveTime * 2
        let request: [UInt8] =
            (try? Grpc_Health_V1_HealthCheckRequest.with {
                $0.service = self.config.healthCheck.serviceName ?? ""
            }.serializedBytes()) ?? []
        while true {
            do { try await Task.sleep(for: interval) } catch { return }
            let channel = self.channel
            guard self.isActive, channel.state() == .ready else { continue }
            do {
                _ = try await channel.unary(
                    method: "/grpc.health.v1.Health/Check",
                    request: request,
                    options: CoreCallOptions(timeout: self.config.keepaliveTimeout)
                )
            } catch  where error.code == .deadlineExceeded || error.code == .unavailable {
                self.logger.debug("keepalive RPC got no answer", metadata: ["grpc.pool.reason": "\(error)"])
                sink.yield(.check)
            } catch {
                // Answered: the server wrote to the connection.
            }
        }
    }

    /// A new channel that connected within `timeout` and passed a health check, or `nil`.
    private func connectReplacement() async -> CoreChannel? {
        let candidate: CoreChannel
        do {
            candidate = try self.makeChannel()
        } catch {
            self.recordError("cannot create a channel: \(error)")
            return nil
        }
        let state = await candidate.connect(timeout: self.config.timeout)
        guard state == .ready else {
            self.recordError("new channel did not connect within \(self.config.timeout) (\(state))")
            candidate.close()
            return nil
        }
        guard case .healthy = await self.probe(candidate) else {
            candidate.close()
            return nil
        }
        return candidate
    }
}
