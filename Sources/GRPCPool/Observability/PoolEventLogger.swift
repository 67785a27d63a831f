internal import Logging

/// Writes a pool's events to its logger: one line per event, with the service, and for
/// connection events the connection's index and endpoint, as metadata (`grpc.pool.*`).
///
/// Levels: an ejection is a warning (calls failed until it happened); connecting and the queue
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
        }
    }
}
