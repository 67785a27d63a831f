/// A configuration value that cannot work, named by its field.
///
/// ```
/// invalid configuration: poolSize = 0 (must be between 1 and 1024)
/// ```
public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The field, as a Swift key path would spell it (`"keepalive.time"`, `"endpoints[1].port"`).
    public var field: String
    /// The rejected value, as text.
    public var value: String
    /// What the value must be instead.
    public var reason: String

    public init(field: String, value: String, reason: String) {
        self.field = field
        self.value = value
        self.reason = reason
    }

    public var description: String {
        "invalid configuration: \(field) = \(value) (\(reason))"
    }
}
