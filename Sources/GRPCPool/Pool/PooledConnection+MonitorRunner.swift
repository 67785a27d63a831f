internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Logging

extension PooledConnection {
    /// What ``monitor()`` runs: it hands each event to the ``StateMachine`` and carries out the
    /// actions the machine returns. The machine decides; this does the I/O (channels, checks,
    /// timers, logs).
    struct MonitorRunner {
        let connection: PooledConnection
        let sink: AsyncStream<MonitorEvent>.Continuation
        let backoff: Backoff
        var machine: StateMachine

        init(connection: PooledConnection, sink: AsyncStream<MonitorEvent>.Continuation) {
            self.connection = connection
            self.sink = sink
            self.backoff = Backoff(
                initial: connection.config.retryDelay,
                maximum: connection.config.maxRetryDelay,
                fastAttempts: connection.config.maxRetries
            )
            self.machine = StateMachine(
                maxRetries: connection.config.maxRetries,
                maxRetryDelay: connection.config.maxRetryDelay
            )
        }

        private var facts: StateMachine.Facts {
            StateMachine.Facts(
                isActive: self.connection.isActive,
                isHealthy: self.connection.isHealthy,
                isEjected: self.connection.isEjected
            )
        }

        /// Follows the current channel, starts the other event sources, and connects an active
        /// connection (an inactive one, beyond the pool's working set, connects when activated).
        func start(in group: inout DiscardingTaskGroup) {
            let (generation, channel) = self.connection.currentGeneration
            self.follow(channel, generation: generation, in: &group)
            self.connection.startEventSources(in: &group, sink: self.sink)
            if self.connection.isActive {
                self.connection.emit(.connecting)
                _ = channel.state(tryToConnect: true)
            }
        }

        mutating func handle(_ event: MonitorEvent, in group: inout DiscardingTaskGroup) async {
            let connection = self.connection
            switch event {
            case .connectivity(let state, let generation):
                guard connection.connectivityChanged(state, generation: generation) else { return }
                if state == .transientFailure { connection.onConnectFailure() }
                connection.logger.debug("connectivity changed", metadata: ["grpc.pool.state": "\(state)"])
                await self.run(self.machine.connectivityChanged(to: state, facts: self.facts), in: &group)

            case .check:
                await self.checkNow(in: &group)

            case .keepalive:
                guard await connection.keepaliveRPC() == false else { return }
                await self.checkNow(in: &group)

            case .retry(let episode, let attempt):
                guard self.machine.isCurrent(episode: episode) else { return }
                await self.retry(attempt: attempt, in: &group)

            case .command(.activate):
                // A fresh channel if the last one was closed, then the usual path.
                if connection.channel.state() == .shutdown, let fresh = try? connection.makeChannel() {
                    let (generation, _) = connection.replaceChannel(with: fresh)
                    self.follow(fresh, generation: generation, in: &group)
                }
                await self.run(self.machine.activated(), in: &group)

            case .command(.deactivate):
                await self.run(self.machine.deactivated(), in: &group)

            case .command(.move(let from)):
                await self.move(from: from, in: &group)

            case .drained(let generation):
                let current = generation == connection.currentGeneration.0
                await self.run(self.machine.drained(isActive: connection.isActive, current: current), in: &group)

            case .command(.eject(let failures)):
                let actions = self.machine.ejected(failures: failures, ejectionTime: connection.ejectionTime)
                await self.run(actions, in: &group)

            case .refresh:
                guard self.machine.refreshes(facts: self.facts) else { return }
                _ = await self.replace(reason: "maxConnectionAge", in: &group)

            case .restore(let ejection):
                guard self.machine.restores(ejection: ejection, facts: self.facts) else { return }
                connection.endEjection()
                await self.run(self.machine.restored(await connection.probe(), facts: self.facts), in: &group)
            }
        }

        /// A health check now, and what the machine makes of its result.
        private mutating func checkNow(in group: inout DiscardingTaskGroup) async {
            await self.run(self.machine.probed(await self.connection.probe(), facts: self.facts), in: &group)
        }

        /// One attempt of a recovery episode: the machine looks at the channel (and, if it is
        /// connected, at a check) and either acts or asks for a replacement channel.
        private mutating func retry(attempt: Int, in group: inout DiscardingTaskGroup) async {
            let state = self.connection.channel.state()
            let healthyNow = state == .ready ? await self.connection.probe() == .healthy : false
            switch self.machine.retry(attempt: attempt, state: state, healthyNow: healthyNow, facts: self.facts) {
            case .actions(let actions):
                await self.run(actions, in: &group)
            case .replace(let log, let reason):
                self.connection.logger.info("\(log)")
                let connected = await self.replace(reason: reason, in: &group)
                await self.run(
                    self.machine.replacement(connected: connected, attempt: attempt, facts: self.facts),
                    in: &group
                )
            }
        }

        private mutating func run(_ actions: [StateMachine.Action], in group: inout DiscardingTaskGroup) async {
            let connection = self.connection
            for action in actions {
                switch action {
                case .setHealthy(let healthy):
                    connection.setHealthy(healthy)
                case .emit(let kind):
                    connection.emit(kind)
                case .recordError(let message):
                    connection.recordError(message)
                case .log(let message, let reason):
                    connection.logger.info("\(message)", metadata: reason.map { ["grpc.pool.reason": "\($0)"] })
                case .requestConnect:
                    _ = connection.channel.state(tryToConnect: true)
                case .probe:
                    await self.checkNow(in: &group)
                case .scheduleRetry(let episode, let attempt):
                    let delay = self.backoff.delay(attempt: attempt)
                    self.yield(.retry(episode: episode, attempt: attempt), after: delay, in: &group)
                    connection.logger.info(
                        "reconnection attempt \(attempt) scheduled",
                        metadata: ["grpc.pool.delay_ms": "\(Int(delay.milliseconds))"]
                    )
                case .scheduleRestore(let ejection, let time):
                    self.yield(.restore(ejection: ejection), after: time, in: &group)
                case .replaceChannel(let reason):
                    _ = await self.replace(reason: reason, in: &group)
                case .waitUntilDrained:
                    let generation = connection.currentGeneration.0
                    let (limit, sink) = (connection.config.drainTimeout, self.sink)
                    group.addTask {
                        await connection.waitUntilUnloaded(timeLimit: limit)
                        sink.yield(.drained(generation: generation))
                    }
                case .closeChannel:
                    connection.closeChannel()
                }
            }
        }

        /// Connects a replacement and swaps it in; whether that worked.
        private mutating func replace(reason: String, in group: inout DiscardingTaskGroup) async -> Bool {
            guard let replacement = await self.connection.connectReplacement() else { return false }
            self.machine.swapped()
            self.swapIn(replacement, in: &group)
            self.connection.emit(.refreshed(reason: reason))
            return true
        }

        /// The pool placed the connection on another address: outside the working set, a new
        /// channel waits there unconnected; in it, a new channel connects there and is checked
        /// before it takes the old one's place (whose calls finish), and one that does not
        /// connect in time takes its place anyway and keeps trying.
        private mutating func move(from: String, in group: inout DiscardingTaskGroup) async {
            let connection = self.connection
            let to = connection.address
            guard connection.isActive else {
                if let (generation, fresh) = connection.retarget() {
                    self.follow(fresh, generation: generation, in: &group)
                }
                return connection.emit(.moved(from: from, to: to))
            }
            let connected = await self.replace(reason: "moved from \(from)", in: &group)
            if !connected, let fresh = try? connection.makeChannel() {
                self.swapIn(fresh, in: &group)
            }
            connection.emit(.moved(from: from, to: to))
            await self.run(self.machine.moved(connected: connected, facts: self.facts), in: &group)
        }

        /// Puts `replacement` in place of the current channel; the old one's calls (they picked
        /// it already) finish, or reach the usual deadline, before it goes.
        private func swapIn(_ replacement: CoreChannel, in group: inout DiscardingTaskGroup) {
            let (generation, old) = self.connection.replaceChannel(with: replacement)
            let drainLimit = self.connection.config.drainTimeout
            group.addTask { [clock = self.connection.clock] in await clock.drainAndClose(old, within: drainLimit) }
            self.follow(replacement, generation: generation, in: &group)
        }

        private func follow(_ channel: CoreChannel, generation: Int, in group: inout DiscardingTaskGroup) {
            let sink = self.sink
            group.addTask {
                for await state in channel.connectivityUpdates() {
                    sink.yield(.connectivity(state, generation: generation))
                }
            }
        }

        /// Yields `event` after `delay` on the connection's clock, counted from now (not from when
        /// the timer's task starts).
        private func yield(_ event: MonitorEvent, after delay: Duration, in group: inout DiscardingTaskGroup) {
            let (sink, clock) = (self.sink, self.connection.clock)
            let deadline = clock.now.advanced(by: delay)
            group.addTask {
                do {
                    try await clock.sleep(until: deadline)
                    sink.yield(event)
                } catch {}
            }
        }
    }
}
