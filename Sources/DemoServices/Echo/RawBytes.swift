public import GRPCCore

/// Messages as the raw bytes on the wire: what `bench.Echo` sends and receives.
public struct RawBytesSerializer: MessageSerializer {
    public typealias Message = [UInt8]
    public init() {}
    public func serialize<Bytes: GRPCContiguousBytes>(_ message: [UInt8]) throws -> Bytes {
        Bytes(message)
    }
}

/// The inverse of ``RawBytesSerializer``.
public struct RawBytesDeserializer: MessageDeserializer {
    public typealias Message = [UInt8]
    public init() {}
    public func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { Array($0) }
    }
}
