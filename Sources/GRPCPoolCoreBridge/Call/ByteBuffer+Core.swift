internal import CGRPCCore

/// Converting message bytes to and from `grpc_byte_buffer`.
enum ByteBuffers {
    /// A new byte buffer holding a copy of `bytes`; destroy it with ``destroy(_:)``.
    static func make(_ bytes: [UInt8]) -> UnsafeMutablePointer<grpc_byte_buffer> {
        var slice = bytes.withUnsafeBufferPointer { buffer in
            buffer.withMemoryRebound(to: CChar.self) { chars in
                grpc_slice_from_copied_buffer(chars.baseAddress, chars.count)
            }
        }
        defer { grpc_slice_unref(slice) }  // the buffer holds its own reference (byte_buffer.h)
        LiveObjects.byteBuffers.increment()
        return grpc_raw_byte_buffer_create(&slice, 1)!
    }

    /// Copies the (decompressed) bytes out of a buffer.
    static func read(_ buffer: UnsafeMutablePointer<grpc_byte_buffer>) -> [UInt8] {
        var reader = grpc_byte_buffer_reader()
        guard grpc_byte_buffer_reader_init(&reader, buffer) != 0 else { return [] }
        defer { grpc_byte_buffer_reader_destroy(&reader) }
        var bytes = [UInt8]()
        bytes.reserveCapacity(grpc_byte_buffer_length(buffer))
        var slice = grpc_slice()
        while grpc_byte_buffer_reader_next(&reader, &slice) != 0 {
            withUnsafePointer(to: &slice) { pointer in
                bytes.append(
                    contentsOf: UnsafeBufferPointer(
                        start: CGRPCCore_slice_start(pointer),
                        count: CGRPCCore_slice_length(pointer)
                    )
                )
            }
            grpc_slice_unref(slice)
        }
        return bytes
    }

    /// Copies out and destroys a received buffer (which the core handed to us).
    static func take(_ buffer: UnsafeMutablePointer<grpc_byte_buffer>) -> [UInt8] {
        LiveObjects.byteBuffers.increment()
        let bytes = read(buffer)
        destroy(buffer)
        return bytes
    }

    static func destroy(_ buffer: UnsafeMutablePointer<grpc_byte_buffer>) {
        grpc_byte_buffer_destroy(buffer)
        LiveObjects.byteBuffers.decrement()
    }
}

extension grpc_slice {
    /// The slice's bytes, copied.
    var bytes: [UInt8] {
        withUnsafePointer(to: self) { pointer in
            Array(UnsafeBufferPointer(start: CGRPCCore_slice_start(pointer), count: CGRPCCore_slice_length(pointer)))
        }
    }

    /// The slice's bytes as UTF-8 text (lossy).
    var string: String {
        withUnsafePointer(to: self) { pointer in
            String(
                decoding: UnsafeBufferPointer(
                    start: CGRPCCore_slice_start(pointer),
                    count: CGRPCCore_slice_length(pointer)
                ),
                as: UTF8.self
            )
        }
    }
}
