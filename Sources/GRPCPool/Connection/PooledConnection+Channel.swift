internal import CoreMetrics
internal import GRPCPoolCoreBridge

/// The connection's channel and state, as the monitor changes them.
extension PooledConnection {
    /// Hands a connectivity change of channel `generation` to the machine, if it is news about
    /// the current channel (a `ready` after the first counts as a reconnection).
    func connectivityChanged(_ connectivity: ChannelConnectivity, generation: Int) -> (news: Bool, work: [Action]) {
        var news = false
        let work = self.step { state in
            guard generation == state.generation, state.connectivity != connectivity else { return [] }
            news = true
            state.connectivity = connectivity
            if connectivity == .ready {
                state.connectedSince = .now
                if state.everConnected {
                    state.stats.reconnects += 1
                    self.instruments.reconnects.increment()
                }
                state.everConnected = true
            } else {
                state.connectedSince = nil
            }
            return state.machine.connectivityChanged(to: connectivity)
        }
        return (news, work)
    }

    /// Puts a new channel in place of the old one, which is closed (its calls run on).
    func replaceChannel(with channel: CoreChannel) -> (generation: Int, old: CoreChannel) {
        defer { self.dispatcher.changes.signal() }  // it may now go somewhere else
        return self.storage.withLock { state in
            let old = state.channel
            state.channel = channel
            state.generation += 1
            state.connectivity = channel.state()
            state.connectedSince = state.connectivity == .ready ? .now : nil
            state.stats.reconnects += 1
            self.instruments.reconnects.increment()
            state.everConnected = true
            return (state.generation, old)
        }
    }

    var currentGeneration: (Int, CoreChannel) { self.storage.withLock { ($0.generation, $0.channel) } }

    func recordError(_ message: String) {
        let error = GRPCPoolError(code: .connectionFailed, message: "\(self.address): \(message)")
        self.storage.withLock { $0.stats.lastFailure = Failure(error: error, text: message, at: .now) }
    }

    /// A new channel to where the connection goes now.
    func makeChannel() throws -> CoreChannel {
        let placement = self.placement
        return try CoreChannel(
            target: placement.address,
            credentials: self.credentials,
            options: placement.channelOptions(self.options, tls: self.config.usesTLS)
        )
    }

    /// Sends the connection somewhere else from now on: the channels made after this go there.
    func place(_ placement: Placement) {
        self.storage.withLock { $0.placement = placement }
    }

    /// Puts a new, unconnected channel to where it goes now in place of the current one, which
    /// is closed: for a connection with no calls (not started yet, or out of the working set).
    /// Returns the new channel and its generation, or `nil` when no channel can be made.
    @discardableResult
    func retarget() -> (generation: Int, channel: CoreChannel)? {
        guard let fresh = try? self.makeChannel() else { return nil }
        let (generation, old) = self.storage.withLock { state in
            let old = state.channel
            state.channel = fresh
            state.generation += 1
            state.connectivity = .idle
            state.connectedSince = nil
            return (state.generation, old)
        }
        old.close()
        self.dispatcher.changes.signal()
        return (generation, fresh)
    }

    /// Closes the current channel (when the connection leaves the working set, it stays, to be
    /// activated again with a new channel; ``close()`` closes it for good).
    func closeChannel() {
        self.storage.withLock { state in
            state.channel.close()
            state.connectivity = .shutdown
            state.connectedSince = nil
        }
    }

    func close() {
        self.clientStorage.withLock { $0?.transport.beginGracefulShutdown() }
        _ = self.step { $0.machine.closed() }
        self.inbox.finish()
        self.closeChannel()
        self.emit(.closed)
    }
}
