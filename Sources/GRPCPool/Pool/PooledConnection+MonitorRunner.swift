internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Logging

extension PooledConnection {
    /// What ``monitor()`` runs: it hands each event to the connection's machine
    /// (``PooledConnection/step(publish:_:)``) and starts the work the machine asks for as child
    /// tasks, whose results come back to the inbox as events. It decides nothing and awaits no
    /// I/O itself.
    struct MonitorRunner {
        let connection: PooledConnection

        /// Follows the current channel, starts the timers, and connects an active connection
        /// (an inactive one, beyond the pool's working set, connects when activated).
        func start(in group: inout DiscardingTaskGroup) {
            let (generation, channel) = self.connection.currentGeneration
            self.follow(channel, generation: generation, in: &group)
            self.connection.startTimers(in: &group)
            if self.connection.isActive {
                self.connection.emit(.connecting)
                _ = channel.state(tryToConnect: true)
            }
        }

        func handle(_ event: MonitorEvent, in group: inout DiscardingTaskGroup) {
            let connection = self.connection
            var candidate: CoreChannel?
            let work: [Action]
            switch event {
            case .connectivity(let state, let generation):
                let (news, actions) = connection.connectivityChanged(state, generation: generation)
                guard news else { return }
                if state == .transientFailure { connection.onConnectFailure() }
                connection.logger.debug("connectivity changed", metadata: ["grpc.pool.state": "\(state)"])
                work = actions
            case .checkTimer:
                work = connection.step { $0.machine.check() }
            case .keepaliveTimer:
                work = connection.step { $0.machine.keepaliveTimerFired() }
            case .retryTimer(let episode, let attempt):
                let state = connection.channel.state()
                work = connection.step { $0.machine.retryTimerFired(episode: episode, attempt: attempt, state: state) }
            case .restoreTimer(let ejection):
                work = connection.step { $0.machine.restoreTimerFired(ejection: ejection) }
            case .maxAge:
                work = connection.step { $0.machine.maxAgeReached() }
            case .work(let actions):
                work = actions
            case .checked(let probe, let generation):
                work = connection.step { $0.machine.checked(probe, current: generation == $0.generation) }
            case .keepaliveAnswered(let answered):
                work = connection.step { $0.machine.keepaliveAnswered(answered) }
            case .replacementFinished(let id, let channel):
                candidate = channel
                work = connection.step { $0.machine.replacementFinished(id: id, connected: channel != nil) }
            case .drained(let generation):
                work = connection.step { $0.machine.drained(current: generation == $0.generation) }
            }
            for action in work {
                self.start(action, candidate: candidate, in: &group)
            }
        }

        /// Starts one piece of work; `candidate` is the replacement that just finished, if any.
        private func start(_ action: Action, candidate: CoreChannel?, in group: inout DiscardingTaskGroup) {
            let (connection, inbox) = (self.connection, self.connection.inbox)
            switch action {
            case .check:
                let (generation, channel) = connection.currentGeneration
                group.addTask { inbox.yield(.checked(await connection.probe(channel), generation: generation)) }
            case .keepalive:
                group.addTask { inbox.yield(.keepaliveAnswered(await connection.keepaliveRPC())) }
            case .scheduleRetry(let episode, let attempt, let delay):
                self.yield(.retryTimer(episode: episode, attempt: attempt), after: delay, in: &group)
            case .scheduleRestore(let ejection, let time):
                self.yield(.restoreTimer(ejection: ejection), after: time, in: &group)
            case .connectReplacement(let id):
                group.addTask {
                    inbox.yield(.replacementFinished(id: id, channel: await connection.connectReplacement(id: id)))
                }
            case .swapIn(let reason):
                guard let candidate else { return }
                self.swapIn(candidate, in: &group)
                connection.emit(.refreshed(reason: reason))
            case .swapInUnconnected:
                if let fresh = try? connection.makeChannel() { self.swapIn(fresh, in: &group) }
            case .discardReplacement:
                candidate?.close()
            case .reopen:
                // A fresh channel if the last one was closed (the connection left the working set).
                if connection.channel.state() == .shutdown, let fresh = try? connection.makeChannel() {
                    let (generation, _) = connection.replaceChannel(with: fresh)
                    self.follow(fresh, generation: generation, in: &group)
                }
                _ = connection.channel.state(tryToConnect: true)
            case .retarget:
                if let (generation, fresh) = connection.retarget() {
                    self.follow(fresh, generation: generation, in: &group)
                }
            case .waitUntilDrained:
                let generation = connection.currentGeneration.0
                let limit = connection.config.drainTimeout
                group.addTask {
                    await connection.waitUntilUnloaded(timeLimit: limit)
                    inbox.yield(.drained(generation: generation))
                }
            case .emit, .emitMoved, .recordError, .log, .requestConnect, .cancelReplacement, .closeChannel:
                break  // carried out by `step`
            }
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
            let inbox = self.connection.inbox
            group.addTask {
                for await state in channel.connectivityUpdates() {
                    inbox.yield(.connectivity(state, generation: generation))
                }
            }
        }

        /// Yields `event` after `delay` on the connection's clock, counted from now (not from when
        /// the timer's task starts).
        private func yield(_ event: MonitorEvent, after delay: Duration, in group: inout DiscardingTaskGroup) {
            let (inbox, clock) = (self.connection.inbox, self.connection.clock)
            let deadline = clock.now.advanced(by: delay)
            group.addTask {
                do {
                    try await clock.sleep(until: deadline)
                    inbox.yield(event)
                } catch {}
            }
        }
    }
}
