internal import Logging

/// Writes a pool's events to its logger: one line per event, with the service, and for
/// connection events the connection's index and endpoint, as metadata (`grpc.pool.*`).
///
/// Levels: an ejection and a failed lookup are warnings (calls failed until it happened; the
/// addresses may be going stale); connecting and the queue
/// depth are debug (they come often); everything else is info.
final class PoolEventLogger: PoolObserver {
    private let logger: Logger

    /// - Parameter logger: the pool's logger (its metadata names the service already).
    init(logger: Logger) {
        self.logger = logger
    }

    func handle(_ event: PoolEvent) {
        var logger = self.logger
        if let connection = event.connection {
            logger[metadataKey: "grpc.pool.connection"] = "\(connection)"
            logger[metadataKey: "grpc.pool.endpoint"] = "\(event.endpoint ?? "")"
            logger[metadataKey: "grpc.pool.address"] = "\(event.address ?? "")"
        }
        switch event.kind {
        case .connecting:
            logger.debug("connecting")
        case .connected:
            logger.info("connection established")
        case .failed(let reason):
            logger.info("connection attempt failed", metadata: ["grpc.pool.reason": "\(reason)"])
        case .disconnected(let reason):
            logger.info("connection lost", metadata: ["grpc.pool.reason": "\(reason)"])
        case .ejected(let failures, let ejectionTime):
            logger.warning(
                "connection ejected",
                metadata: [
                    "grpc.pool.reason": "\(failures) failed calls in a row",
                    "grpc.pool.delay_ms": "\(Int(ejectionTime.milliseconds))",
                ]
            )
        case .restored:
            logger.info("connection restored after ejection")
        case .refreshed(let reason):
            logger.info("connection refreshed", metadata: ["grpc.pool.reason": "\(reason)"])
        case .drained:
            logger.info("connection drained and closed")
        case .closed:
            logger.info("connection closed")
        case .resized(let from, let to, let demand):
            logger.info(
                "pool resized",
                metadata: [
                    "grpc.pool.size": "\(to)",
                    "grpc.pool.previous_size": "\(from)",
                    "grpc.pool.reason": "\(demand) calls for \(from) connections",
                ]
            )
        case .queueDepth(let depth):
            logger.debug("calls waiting for room", metadata: ["grpc.pool.queued": "\(depth)"])
        case .resolved(let endpoint, let addresses):
            logger.info(
                "addresses resolved",
                metadata: [
                    "grpc.pool.endpoint": "\(endpoint)", "grpc.pool.addresses": "\(addresses.joined(separator: ","))",
                ]
            )
        case .resolutionFailed(let endpoint, let reason):
            logger.warning(
                "address lookup failed; keeping the last addresses",
                metadata: ["grpc.pool.endpoint": "\(endpoint)", "grpc.pool.reason": "\(reason)"]
            )
        case .moved(let from, let to):
            logger.info(
                "connection moved",
                metadata: ["grpc.pool.previous_address": "\(from)", "grpc.pool.address": "\(to)"]
            )
        }
    }
}
