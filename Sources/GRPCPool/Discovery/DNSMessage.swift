/// The two DNS messages the pool needs (RFC 1035): a recursive query for one name's A or AAAA
/// records, and the addresses in its answer. Pure bytes in and out.
enum DNSMessage {
    enum RecordType: UInt16, Sendable {
        case a = 1
        case aaaa = 28
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The UDP answer size the pool's queries allow (EDNS(0), RFC 6891): room for about 250 A
    /// records, where 512 bytes hold about 30.
    static let udpPayloadSize: UInt16 = 4096

    /// A query with id `id` for `name`'s records of `type`, recursion desired, with an EDNS(0)
    /// record allowing answers of ``udpPayloadSize`` bytes over UDP.
    static func query(id: UInt16, name: String, type: RecordType) throws(Failure) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.append(contentsOf: [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1])
        for label in name.split(separator: ".") {
            let utf8 = Array(label.utf8)
            guard (1...63).contains(utf8.count) else { throw Failure(description: "bad DNS name \"\(name)\"") }
            bytes.append(UInt8(utf8.count))
            bytes.append(contentsOf: utf8)
        }
        bytes.append(0)
        bytes.append(contentsOf: [UInt8(type.rawValue >> 8), UInt8(type.rawValue & 0xff), 0, 1])
        // OPT: the root name, type 41, the payload size as its class, no extended flags, no data.
        let size = Self.udpPayloadSize
        bytes.append(contentsOf: [0, 0, 41, UInt8(size >> 8), UInt8(size & 0xff), 0, 0, 0, 0, 0, 0])
        return bytes
    }

    /// Whether `bytes` answers query `id` with its truncation bit set: the answer did not fit
    /// in a UDP message, and the query must be asked again over TCP.
    static func isTruncated(_ bytes: [UInt8], id: UInt16) -> Bool {
        guard bytes.count >= 4, UInt16(bytes[0]) << 8 | UInt16(bytes[1]) == id else { return false }
        return bytes[2] & 0x80 != 0 && bytes[2] & 0x02 != 0
    }

    /// The answer to query `id`: the IP addresses (as text) of its records of `type`, or `nil`
    /// when `bytes` answers another query. A name that does not exist has no addresses.
    ///
    /// - Throws: ``Failure`` when the server reports an error other than "no such name", or the
    ///   message is cut short.
    static func addresses(in bytes: [UInt8], id: UInt16, type: RecordType) throws(Failure) -> [String]? {
        var reader = Reader(bytes: bytes)
        guard let answerID = reader.u16(), answerID == id, let flags = reader.u16(), flags & 0x8000 != 0 else {
            return nil
        }
        let code = flags & 0x000f
        if code == 3 { return [] }
        guard code == 0 else { throw Failure(description: "DNS server answered with error code \(code)") }
        guard let questions = reader.u16(), let answers = reader.u16(), reader.skip(4) else {
            throw Failure(description: "DNS answer cut short")
        }
        for _ in 0..<questions {
            guard reader.skipName(), reader.skip(4) else { throw Failure(description: "DNS answer cut short") }
        }
        var found: [String] = []
        for _ in 0..<answers {
            guard reader.skipName(), let recordType = reader.u16(), reader.skip(6), let length = reader.u16(),
                let data = reader.take(Int(length))
            else {
                throw Failure(description: "DNS answer cut short")
            }
            guard recordType == type.rawValue else { continue }  // a CNAME on the way, say
            switch type {
            case .a where data.count == 4:
                found.append(data.map(String.init).joined(separator: "."))
            case .aaaa where data.count == 16:
                found.append(Self.ipv6Text(data))
            default:
                throw Failure(description: "DNS record of type \(recordType) with \(data.count) bytes")
            }
        }
        return found
    }

    /// RFC 5952 text: lower-case hex groups, the longest run of two or more zero groups as `::`.
    static func ipv6Text(_ bytes: ArraySlice<UInt8>) -> String {
        let bytes = Array(bytes)
        let groups = stride(from: 0, to: 16, by: 2).map { UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]) }
        var best: Range<Int>?
        var start: Int?
        for index in 0...groups.count {
            if index < groups.count, groups[index] == 0 {
                if start == nil { start = index }
            } else if let run = start {
                if index - run >= 2, index - run > (best?.count ?? 0) { best = run..<index }
                start = nil
            }
        }
        let hex = groups.map { String($0, radix: 16) }
        guard let best else { return hex.joined(separator: ":") }
        return hex[..<best.lowerBound].joined(separator: ":") + "::" + hex[best.upperBound...].joined(separator: ":")
    }

    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        mutating func u16() -> UInt16? {
            guard offset + 2 <= bytes.count else { return nil }
            defer { offset += 2 }
            return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
        }

        mutating func skip(_ count: Int) -> Bool {
            guard offset + count <= bytes.count else { return false }
            offset += count
            return true
        }

        mutating func take(_ count: Int) -> ArraySlice<UInt8>? {
            guard offset + count <= bytes.count else { return nil }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }

        /// Skips a name: labels up to a zero, or up to a compression pointer (two bytes).
        mutating func skipName() -> Bool {
            while offset < bytes.count {
                let length = bytes[offset]
                if length & 0xc0 == 0xc0 { return self.skip(2) }
                offset += 1
                if length == 0 { return true }
                guard self.skip(Int(length)) else { return false }
            }
            return false
        }
    }
}
