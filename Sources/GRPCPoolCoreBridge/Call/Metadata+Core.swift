internal import CGRPCCore
internal import GRPCCore

/// Metadata to send, laid out as the core wants it: a C array of `grpc_metadata` whose key and
/// value slices this object owns. It must stay alive until the batch that sends it completes.
///
/// `grpc-timeout` is left out: GRPCCore writes the RPC's deadline there, and the core sends the
/// call's own deadline (which the pool gives it) as that header; parsed from metadata as well, it
/// would be read twice.
final class OutboundMetadata {
    let elements: UnsafeMutablePointer<grpc_metadata>
    let count: Int

    static let timeoutKey = "grpc-timeout"

    private static func isTimeout(_ key: String) -> Bool {
        key.utf8.count == Self.timeoutKey.utf8.count && key.lowercased() == Self.timeoutKey
    }

    init(_ metadata: Metadata, extra: [(String, String)] = []) {
        var sent = 0
        for (key, _) in metadata where !Self.isTimeout(key) { sent += 1 }
        self.count = sent + extra.count
        self.elements = .allocate(capacity: max(self.count, 1))
        var index = 0
        for (key, value) in metadata where !Self.isTimeout(key) {
            let bytes: [UInt8]
            switch value {
            case .string(let string): bytes = Array(string.utf8)
            case .binary(let binary): bytes = binary
            }
            self.elements.advanced(by: index).initialize(to: Self.element(key: key, value: bytes))
            index += 1
        }
        for (key, value) in extra {
            self.elements.advanced(by: index).initialize(to: Self.element(key: key, value: Array(value.utf8)))
            index += 1
        }
    }

    deinit {
        for index in 0..<self.count {
            grpc_slice_unref(self.elements[index].key)
            grpc_slice_unref(self.elements[index].value)
        }
        self.elements.deinitialize(count: self.count)
        self.elements.deallocate()
    }

    private static func element(key: String, value: [UInt8]) -> grpc_metadata {
        var element = grpc_metadata()
        element.key = grpc_slice_from_copied_string(key.lowercased())
        element.value = value.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { grpc_slice_from_copied_buffer($0.baseAddress, $0.count) }
        }
        return element
    }
}

extension Metadata {
    /// Copies the elements of a received metadata array (the call owns them, primer §4).
    /// Keys ending in `-bin` become binary values (the core has already base64-decoded them).
    init(copying array: grpc_metadata_array) {
        self.init()
        self.reserveCapacity(array.count)
        for index in 0..<array.count {
            let element = array.metadata[index]
            let key = element.key.string
            if key.hasSuffix("-bin") {
                self.addBinary(element.value.bytes, forKey: key)
            } else {
                self.addString(element.value.string, forKey: key)
            }
        }
    }
}
