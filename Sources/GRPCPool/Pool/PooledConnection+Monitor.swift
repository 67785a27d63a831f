internal import GRPCCore
internal import GRPCPoolCoreBridge
internal import Logging

extension PooledConnection {
    enum MonitorEvent: Sendable {
        case connectivity(ChannelConnectivity, generation: Int)
        case check
        case keepalive
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
        let (events, sink) = AsyncStream.makeStream(of: MonitorEvent.self)
        await withDiscardingTaskGroup { group in
            var runner = MonitorRunner(connection: self, sink: sink)
            runner.start(in: &group)
            for await event in events {
                await runner.handle(event, in: &group)
            }
            group.cancelAll()
        }
    }

    /// The event sources that run beside the channel's own connectivity: the periodic health
    /// check, checks asked for by calls, the keepalive RPC, the pool's commands, and the
    /// connection's maximum age.
    func startEventSources(in group: inout DiscardingTaskGroup, sink: AsyncStream<MonitorEvent>.Continuation) {
        let interval = self.config.healthCheck.interval
        group.addTask {
            while !Task.isCancelled {
                do { try await self.clock.sleep(for: interval) } catch { return }
                sink.yield(.check)
            }
        }
        group.addTask {
            for await _ in self.checkRequestStream { sink.yield(.check) }
        }
        let keepaliveInterval = self.config.keepaliveTime * 2
        group.addTask {
            while true {
                do { try await self.clock.sleep(for: keepaliveInterval) } catch { return }
                sink.yield(.keepalive)
            }
        }
        group.addTask {
            for await command in self.commandStream { sink.yield(.command(command)) }
        }
        if let age = self.config.maxConnectionAge {
            group.addTask {
                while true {
                    do { try await self.clock.sleep(for: age * Double.random(in: 0.9...1.1)) } catch { return }
                    sink.yield(.refresh)
                }
            }
        }
    }

    /// The keepalive RPC: one small RPC that the monitor sends on the connection every
    /// 2 × `keepaliveTime`, whatever else it carries, so that the server writes to it at least
    /// that often. Whether it got an answer; a connection out of rotation or not ready sends none.
    ///
    /// A server forgives keepalive pings whenever it sends headers or data (gRFC A8), and a
    /// server with default settings allows a ping without data only every 5 minutes, with two
    /// strikes: a connection that only pings every `keepaliveTime` (an idle one, or one carrying
    /// a quiet long-lived stream) draws GOAWAY `too_many_pings` after its fourth ping, and its
    /// streams fail. With an answered RPC between every two pings, no ping is ever a third strike.
    /// The RPC is `grpc.health.v1.Health/Check` (for the configured service name, or ""): any
    /// answer, UNIMPLEMENTED included, counts; no answer within `keepaliveTimeout` asks the
    /// monitor for a check. The monitor sends it between its other events, so that the pool's
    /// own RPCs on a connection never run two at a time: together with the calls they fit in
    /// `streamCapacity`.
    func keepaliveRPC() async -> Bool {
        let channel = self.channel
        guard self.isActive, channel.state() == .ready else { return true }
        let serviceName = self.config.healthCheck.serviceName ?? ""
        // Any answer is one (the server wrote to the connection); no answer, or none in time,
        // is what the health check reports as worth replacing the channel for.
        let probe = await Self.check(serviceName: serviceName, on: channel, timeout: self.config.keepaliveTimeout)
        guard case .unhealthy(let reason, replace: true) = probe else { return true }
        self.logger.debug("keepalive RPC got no answer", metadata: ["grpc.pool.reason": "\(reason)"])
        return false
    }

    /// How long an ejection lasts.
    var ejectionTime: Duration { self.config.outlierDetection?.ejectionTime ?? self.config.retryDelay }

    /// A new channel that connected within `timeout` and passed a health check, or `nil`.
    func connectReplacement() async -> CoreChannel? {
        let candidate: CoreChannel
        do {
            candidate = try self.makeChannel()
        } catch {
            self.recordError("cannot create a channel: \(error)")
            return nil
        }
        let state = await self.clock.connect(candidate, within: self.config.timeout)
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
