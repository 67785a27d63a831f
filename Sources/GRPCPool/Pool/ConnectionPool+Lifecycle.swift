internal import CoreMetrics
internal import Foundation
internal import GRPCPoolCoreBridge
internal import Logging
internal import Synchronization

/// Running the pool: connect, watch, resize, and shut down.
extension ConnectionPool {
    /// Connects every connection, then watches them until ``beginGracefulShutdown()`` (which
    /// drains the calls in flight, then closes the channels) or cancellation (which closes at once).
    func run(metricsLogInterval: Duration? = nil) async {
        self.logger.info(
            "pool starting",
            metadata: [
                "grpc.pool.size": "\(self.connections.count)", "grpc.pool.balancing": "\(self.config.balancing)",
            ]
        )
        // The first lookup of the endpoints' names places the connections before they connect.
        let firstTTL = self.addressBook.withLock({ $0.hasNames }) ? await self.lookUpAddresses(beforeStart: true) : nil
        // The first read of the `etcd:` prefixes, likewise.
        let registries = await self.readRegistries()
        var drained = false
        await withDiscardingTaskGroup { group in
            for connection in self.connections {
                group.addTask { await connection.monitor() }
            }
            group.addTask { await self.discover(firstTTL: firstTTL) }
            if let registry = self.registry {
                group.addTask { await registry.pool.run() }
                for (index, state) in registries {
                    group.addTask { await self.follow(endpoint: index, from: state) }
                }
            }
            group.addTask { await self.sampleGauges() }
            if let maximum = self.config.maxConnections, maximum > self.config.poolSize {
                group.addTask { await self.resize(upTo: maximum) }
            }
            if let metricsLogInterval {
                group.addTask { await self.logMetrics(every: metricsLogInterval) }
            }
            drained = await self.waitUntilDrained()
            group.cancelAll()
        }
        // After a graceful drain, the calls have ended but the core objects of the last ones may
        // still be on their way out (the poller lets go of a call just after resuming its caller):
        // close each channel once they are gone, all at once. Cancelled: close at once.
        let gracefully = drained
        await withDiscardingTaskGroup { group in
            for connection in self.connections {
                group.addTask {
                    if gracefully {
                        await self.clock.drainAndClose(connection.channel, within: self.config.drainTimeout)
                    }
                    connection.close()
                }
            }
        }
        self.dispatcher.closed()
        self.logger.info("pool shut down")
    }

    /// Stops handing out connections; ``run()`` returns once the calls in flight have finished.
    func beginGracefulShutdown() {
        if self.dispatcher.beginShutdown() {
            self.clientStorage.withLock { $0?.transport.beginGracefulShutdown() }
            self.logger.info("pool draining", metadata: ["grpc.pool.in_flight": "\(self.dispatcher.totalLoad)"])
            self.lifecycleChanges.signal()
        }
    }

    /// One metrics line for this pool, every `interval`:
    ///
    /// ```
    /// info grpc.pool: grpc.pool.service=stt requests=1520 success_rate=0.998 avg_ms=1.92 p50_ms=1.80
    ///   p99_ms=5.10 in_flight=4 healthy=3/3 reconnects=1 [GRPCPool] pool metrics
    /// ```
    func logMetrics(every interval: Duration) async {
        while true {
            do { try await self.clock.sleep(for: interval) } catch { return }
            let metrics = self.metrics()
            self.logger.info(
                "pool metrics",
                metadata: [
                    "requests": "\(metrics.totalRequests)",
                    "success_rate": "\(String(format: "%.3f", metrics.successRate))",
                    "avg_ms": "\(String(format: "%.2f", metrics.averageResponseTime.milliseconds))",
                    "p50_ms": "\(String(format: "%.2f", metrics.p50ResponseTime.milliseconds))",
                    "p99_ms": "\(String(format: "%.2f", metrics.p99ResponseTime.milliseconds))",
                    "in_flight": "\(metrics.inFlight)",
                    "healthy": "\(metrics.healthyConnections)/\(metrics.poolSize)",
                    "reconnects": "\(metrics.reconnects)",
                ]
            )
        }
    }

    /// Dynamic sizing (``PoolManager/Scaling``): every `scaling.interval`, one reading of the
    /// demand goes to the ``Scaler``, and its decision is carried out.
    func resize(upTo maximum: Int) async {
        var scaler = Scaler(minimum: self.config.poolSize, maximum: maximum, scaling: self.config.scaling)
        var next = self.clock.now.advanced(by: self.config.scaling.interval)
        while true {
            do { try await self.clock.sleep(until: next) } catch { return }
            let now = self.clock.now
            // The next reading's time is fixed before this one acts: a reading starts one
            // interval after the last began, however long its decision took to carry out.
            next = now.advanced(by: self.config.scaling.interval)
            let active = self.connections.filter(\.isActive)
            let demand = active.reduce(0) { $0 + $1.load } + self.dispatcher.waiting.atCapacity
            switch scaler.reading(demand: demand, active: active.count, at: now) {
            case .stay:
                break
            case .grow(let target):
                let added = Array(self.connections.filter { !$0.isActive }.prefix(target - active.count))
                self.rebalance(adding: added)
                for connection in added { connection.activate() }
                self.events.emit(.resized(from: active.count, to: active.count + added.count, demand: demand))
            case .shrink(let target):
                guard let last = active.last else { break }
                last.deactivate()
                self.rebalance()
                self.events.emit(.resized(from: active.count, to: target, demand: demand))
            }
        }
    }

    /// Samples the in-flight gauges every second (cheaper than updating them on every call), and
    /// reports the queue depth when it changed.
    func sampleGauges() async {
        var queueDepth = 0
        while !Task.isCancelled {
            for connection in self.connections { connection.instruments.inFlight.record(connection.inFlight) }
            let queued = self.dispatcher.waiting.atCapacity
            if queued != queueDepth {
                queueDepth = queued
                self.events.emit(.queueDepth(queued))
            }
            do { try await self.clock.sleep(for: .seconds(1)) } catch { return }
        }
    }

    /// Returns `true` once shutdown has begun and no call or lease is left, `false` when cancelled
    /// (then the pool closes at once). While the pool is open it sleeps until shutdown begins;
    /// after that, every call that ends signals `changes`, so it looks again exactly when the load
    /// may have dropped. Neither wait has a deadline: a waiting task costs nothing until it is woken.
    func waitUntilDrained() async -> Bool {
        guard await self.lifecycleChanges.wait(until: { self.dispatcher.lifecycle != .open }) else { return false }
        return await self.changes.wait { self.dispatcher.totalLoad == 0 }
    }
}
