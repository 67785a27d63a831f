/// How a call picks its connection among the healthy ones.
public struct BalancingPolicy: Sendable, Hashable, CustomStringConvertible {
    enum Value: String, Sendable, Hashable {
        case roundRobin
        case leastInFlight
        case leastBusy
    }

    let value: Value

    /// Each call takes the next healthy connection in turn.
    public static let roundRobin = BalancingPolicy(value: .roundRobin)
    /// Each call takes the healthy connection with the fewest calls in flight.
    public static let leastInFlight = BalancingPolicy(value: .leastInFlight)
    /// Each call takes the less busy of two healthy connections drawn at random (power of two
    /// choices), where busy is the expected wait: (calls in flight + 1) × the connection's
    /// recent latency (a moving average that jumps to any slower call and fades over the next few
    /// dozen calls, or over ten seconds without calls). A slow connection gets few calls, and a
    /// failure counts as a one-second call, so a connection that fails fast does not attract
    /// traffic for having nothing in flight.
    public static let leastBusy = BalancingPolicy(value: .leastBusy)

    public var description: String { self.value.rawValue }
}
