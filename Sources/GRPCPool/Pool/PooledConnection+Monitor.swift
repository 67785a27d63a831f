internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Logging

extension PooledConnection {
    /// What the monitor hears, one at a time: timers, the current channel's connectivity, the
    /// work another caller's event left for it (``step(publish:_:)``), and the results of the
    /// child tasks it started.
    enum MonitorEvent: Sendable {
        case connectivity(ChannelConnectivity, generation: Int)
        case checkTimer
        case keepaliveTimer
        case retryTimer(episode: Int, attempt: Int)
        case restoreTimer(ejection: Int)
        case maxAge
        case work([Action])
        case checked(HealthProbe, generation: Int)
        case keepaliveAnswered(Bool)
        /// Replacement `id` connected and passed a check (its channel), or did not (`nil`).
        case replacementFinished(id: Int, channel: CoreChannel?)
        case drained(generation: Int)
    }

    /// Connects, then keeps the connection healthy until the task is cancelled: a runner over
    /// the connection's inbox that hands each event to the connection's machine and starts the
    /// work it asks for as child tasks, whose results come back as events. No event waits for
    /// I/O, so an eject or a deactivate is handled while a replacement connects.
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
        await withDiscardingTaskGroup { group in
            let runner = MonitorRunner(connection: self)
            runner.start(in: &group)
            for await event in self.inboxStream {
                runner.handle(event, in: &group)
            }
            group.cancelAll()
        }
    }

    /// The timers that run beside the channel's own connectivity: the periodic health check,
    /// the keepalive RPC, and the connection's maximum age.
    func startTimers(in group: inout DiscardingTaskGroup) {
        let (inbox, clock) = (self.inbox, self.clock)
        let interval = self.config.healthCheck.interval
        group.addTask {
            while (try? await clock.sleep(for: interval)) != nil { inbox.yield(.checkTimer) }
        }
        let keepaliveInterval = self.config.keepaliveTime
        group.addTask {
            while (try? await clock.sleep(for: keepaliveInterval)) != nil { inbox.yield(.keepaliveTimer) }
        }
        if let age = self.config.maxConnectionAge {
            group.addTask {
                while (try? await clock.sleep(for: age * Double.random(in: 0.9...1.1))) != nil { inbox.yield(.maxAge) }
            }
        }
    }

    /// The keepalive RPC: one small RPC that the monitor sends on the connection every
    /// `keepaliveTime`, whatever else it carries, so that the server writes to it at least that
    /// often. Whether it got an answer; a connection out of rotation or not ready sends none.
    ///
    /// A server forgives keepalive pings whenever it sends headers or data (gRFC A8), and a
    /// server with default settings allows a ping without data only every 5 minutes, with two
    /// strikes: a connection that only pings every `keepaliveTime` (an idle one, or one carrying
    /// a quiet long-lived stream) draws GOAWAY `too_many_pings` after its fourth ping, and its
    /// streams fail. With an answered RPC as often as a ping, a third strike needs the RPC late by
    /// two whole intervals: a margin that holds when the process is too busy to send it on time.
    /// The RPC is `grpc.health.v1.Health/Check` (for the configured service name, or ""): any
    /// answer, UNIMPLEMENTED included, counts; no answer within `keepaliveTimeout` asks the
    /// machine for a check. One runs at a time, and at most one check beside it: together with
    /// the calls they fit in `streamCapacity`.
    func keepaliveRPC() async -> Bool {
        let channel = self.channel
        guard self.isActive, channel.state() == .ready else { return true }
        let serviceName = self.config.healthCheck.serviceName ?? ""
        // Any answer is one (the server wrote to the connection); no answer, or none in time,
        // is what the health check reports as worth replacing the channel for.
        let probe = await self.check(serviceName: serviceName, on: channel, timeout: self.config.keepaliveTimeout)
        guard case .unhealthy(let reason, replace: true) = probe else { return true }
        self.logger.debug("keepalive RPC got no answer", metadata: ["grpc.pool.reason": "\(reason)"])
        return false
    }

    /// Replacement `id`: a new channel that connected within `timeout` and passed a health
    /// check, or `nil`. The channel is the connection's candidate while it connects, so that the
    /// machine can cancel the attempt (closing the channel ends the wait).
    func connectReplacement(id: Int) async -> CoreChannel? {
        let candidate: CoreChannel
        do {
            candidate = try self.makeChannel()
        } catch {
            self.recordError("cannot create a channel: \(error)")
            return nil
        }
        let registered = self.storage.withLock { state in
            guard state.machine.attempt?.id == id else { return false }
            state.candidate = (id, candidate)
            return true
        }
        let state = registered ? await self.clock.connect(candidate, within: self.config.timeout) : .shutdown
        let connected = state == .ready ? await self.probe(candidate) == .healthy : false
        // Still this attempt's (not cancelled meanwhile)?
        let current = self.storage.withLock { state in
            guard state.candidate?.id == id else { return false }
            state.candidate = nil
            return true
        }
        if connected, current { return candidate }
        if current, state != .ready {
            self.recordError("new channel did not connect within \(self.config.timeout) (\(state))")
        }
        candidate.close()
        return nil
    }
}
