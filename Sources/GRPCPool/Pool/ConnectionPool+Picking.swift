internal import Synchronization

extension PooledConnection: PickCandidate {}

/// Picking: the ``Picker``'s decision over the pool's connections.
extension ConnectionPool {
    typealias Pick = Picker.Pick<PooledConnection>

    /// A healthy connection with room under the balancing policy.
    func pickHealthy() -> Pick {
        let start = self.cursor.wrappingAdd(1, ordering: .relaxed).oldValue
        return self.picker.pick(from: self.connections, start: start, now: .now)
    }
}
