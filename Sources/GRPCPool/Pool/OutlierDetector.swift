internal import GRPCPoolCoreBridge

/// Decides, for one pool, whether a connection on a failure streak is ejected.
///
/// Every connection reports to it when its streak reaches `consecutiveFailures`; the decision and
/// the ejection happen under one lock, so that concurrent streaks never eject more than the
/// allowed share.
final class OutlierDetector: Sendable {
    let settings: PoolManager.OutlierDetection
    /// The pool's connections; emptied when the pool closes (they refer to this detector).
    private let connections = Locked<[PooledConnection]>([])

    init(settings: PoolManager.OutlierDetection) {
        self.settings = settings
    }

    func attach(_ connections: [PooledConnection]) {
        self.connections.withLock { $0 = connections }
    }

    func detach() {
        self.connections.withLock { $0 = [] }
    }

    /// Ejects `connection` if another connection is succeeding and the share allows it.
    func failureStreak(of connection: PooledConnection) {
        self.connections.withLock { all in
            // A connection already out of rotation (connection lost) is the monitor's to recover.
            guard all.count > 1, connection.isHealthy, !connection.isEjected else { return }
            let othersSucceed = all.contains {
                $0 !== connection && $0.isHealthy && !$0.isEjected && $0.failuresInARow == 0
            }
            guard othersSucceed else { return }
            let ejected = all.count { $0.isEjected }
            let allowed = max(1, Int((Double(all.count) * self.settings.maxEjectedShare).rounded(.down)))
            guard ejected < allowed, ejected + 1 < all.count else { return }
            connection.eject()
        }
    }
}
