internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Logging

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

    /// Connects, then keeps the connection healthy until the task is cancelled: a runner over
    /// one stream of events (connectivity, timers, checks asked for, the pool's commands) that
    /// hands each to the ``StateMachine`` and carries out the actions it returns.
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

            var machine = StateMachine(maxRetries: self.config.maxRetries, maxRetryDelay: self.config.maxRetryDelay)
            var facts: StateMachine.Facts {
                StateMachine.Facts(isActive: self.isActive, isHealthy: self.isHealthy, isEjected: self.isEjected)
            }

            /// Puts a connected, checked channel in place of the current one; the old one's calls
            /// (they picked it already) finish, or reach the usual deadline, before it goes.
            func swapIn(_ replacement: CoreChannel, reason: String) {
                let (generation, old) = self.replaceChannel(with: replacement)
                machine.swapped()
                let drainLimit = self.config.timeout
                group.addTask { await old.drainAndClose(timeLimit: drainLimit) }
                follow(replacement, generation: generation)
                self.emit(.refreshed(reason: reason))
            }

            /// Connects a replacement and swaps it in; whether that worked.
            func replace(reason: String) async -> Bool {
                guard let replacement = await self.connectReplacement() else { return false }
                swapIn(replacement, reason: reason)
                return true
            }

            /// The pool placed the connection on another address: outside the working set, a
            /// new channel waits there unconnected; in it, a new channel connects there and is
            /// checked before it takes the old one's place (whose calls finish), and one that
            /// does not connect in time takes its place anyway and keeps trying.
            func move(from: String) async {
                let to = self.address
                guard self.isActive else {
                    if let (generation, fresh) = self.retarget() { follow(fresh, generation: generation) }
                    return self.emit(.moved(from: from, to: to))
                }
                let connected = await replace(reason: "moved from \(from)")
                if !connected, let fresh = try? self.makeChannel() {
                    let (generation, old) = self.replaceChannel(with: fresh)
                    let drainLimit = self.config.timeout
                    group.addTask { await old.drainAndClose(timeLimit: drainLimit) }
                    follow(fresh, generation: generation)
                }
                self.emit(.moved(from: from, to: to))
                await run(machine.moved(connected: connected, facts: facts))
            }

            func run(_ actions: [StateMachine.Action]) async {
                for action in actions {
                    switch action {
                    case .setHealthy(let healthy):
                        self.setHealthy(healthy)
                    case .emit(let kind):
                        self.emit(kind)
                    case .recordError(let message):
                        self.recordError(message)
                    case .log(let message, let reason):
                        self.logger.info("\(message)", metadata: reason.map { ["grpc.pool.reason": "\($0)"] })
                    case .requestConnect:
                        _ = self.channel.state(tryToConnect: true)
                    case .probe:
                        await run(machine.probed(await self.probe(), facts: facts))
                    case .scheduleRetry(let episode, let attempt):
                        let delay = backoff.delay(attempt: attempt)
                        yield(.retry(episode: episode, attempt: attempt), after: delay)
                        self.logger.info(
                            "reconnection attempt \(attempt) scheduled",
                            metadata: ["grpc.pool.delay_ms": "\(Int(delay.milliseconds))"]
                        )
                    case .scheduleRestore(let ejection, let time):
                        yield(.restore(ejection: ejection), after: time)
                    case .replaceChannel(let reason):
                        _ = await replace(reason: reason)
                    case .waitUntilDrained:
                        let generation = self.currentGeneration.0
                        let limit = self.config.timeout
                        group.addTask {
                            await self.waitUntilUnloaded(timeLimit: limit)
                            sink.yield(.drained(generation: generation))
                        }
                    case .closeChannel:
                        self.closeChannel()
                    }
                }
            }

            for await event in events {
                switch event {
                case .connectivity(let state, let generation):
                    guard self.connectivityChanged(state, generation: generation) else { continue }
                    if state == .transientFailure { self.onConnectFailure() }
                    self.logger.debug("connectivity changed", metadata: ["grpc.pool.state": "\(state)"])
                    await run(machine.connectivityChanged(to: state, facts: facts))

                case .check:
                    await run(machine.probed(await self.probe(), facts: facts))

                case .retry(let episode, let attempt):
                    guard machine.isCurrent(episode: episode) else { continue }
                    let state = self.channel.state()
                    let healthyNow = state == .ready ? await self.probe() == .healthy : false
                    switch machine.retry(attempt: attempt, state: state, healthyNow: healthyNow, facts: facts) {
                    case .actions(let actions):
                        await run(actions)
                    case .replace(let log, let reason):
                        self.logger.info("\(log)")
                        let connected = await replace(reason: reason)
                        await run(machine.replacement(connected: connected, attempt: attempt, facts: facts))
                    }

                case .command(.activate):
                    // A fresh channel if the last one was closed, then the usual path.
                    if self.channel.state() == .shutdown, let fresh = try? self.makeChannel() {
                        let (generation, _) = self.replaceChannel(with: fresh)
                        follow(fresh, generation: generation)
                    }
                    await run(machine.activated())

                case .command(.deactivate):
                    await run(machine.deactivated())

                case .command(.move(let from)):
                    await move(from: from)

                case .drained(let generation):
                    await run(machine.drained(isActive: self.isActive, current: generation == self.currentGeneration.0))

                case .command(.eject):
                    await run(machine.ejected(failures: self.failuresInARow, ejectionTime: self.ejectionTime))

                case .refresh:
                    guard machine.refreshes(facts: facts) else { continue }
                    _ = await replace(reason: "maxConnectionAge")

                case .restore(let ejection):
                    guard machine.restores(ejection: ejection, facts: facts) else { continue }
                    self.endEjection()
                    await run(machine.restored(await self.probe(), facts: facts))
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
        let serviceName = self.config.healthCheck.serviceName ?? ""
        while true {
            do { try await Task.sleep(for: interval) } catch { return }
            let channel = self.channel
            guard self.isActive, channel.state() == .ready else { continue }
            // Any answer is one (the server wrote to the connection); no answer, or none in time,
            // is what the health check reports as worth replacing the channel for.
            let probe = await Self.check(serviceName: serviceName, on: channel, timeout: self.config.keepaliveTimeout)
            if case .unhealthy(let reason, replace: true) = probe {
                self.logger.debug("keepalive RPC got no answer", metadata: ["grpc.pool.reason": "\(reason)"])
                sink.yield(.check)
            }
        }
    }

    /// How long an ejection lasts.
    private var ejectionTime: Duration { self.config.outlierDetection?.ejectionTime ?? self.config.retryDelay }

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
