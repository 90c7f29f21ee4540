import NIOCore

/// The multiformats unsigned varint: 7 bits per byte, least significant group first, the high bit
/// set on every byte but the last.
///
/// The spec (multiformats/unsigned-varint) limits a varint to 9 bytes (63 bits of value) and
/// requires the minimal encoding: a final `0x00` group after a continuation byte is refused.
public enum Varint {
    /// The longest encoding the spec allows, in bytes.
    public static let maximumLength = 9
    /// The largest value that fits in ``maximumLength`` bytes: 2^63 - 1.
    public static let maximumValue: UInt64 = (1 << 63) - 1

    /// The number of bytes `value` takes when encoded.
    public static func encodedLength(_ value: UInt64) -> Int {
        var length = 1
        var rest = value >> 7
        while rest != 0 {
            length += 1
            rest >>= 7
        }
        return length
    }

    /// Appends the encoding of `value` to `bytes`.
    ///
    /// - Precondition: `value <= maximumValue` (larger values have no valid encoding).
    public static func encode(_ value: UInt64, into bytes: inout [UInt8]) {
        precondition(value <= maximumValue, "varint value \(value) exceeds 2^63 - 1")
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// The encoding of `value`.
    public static func encode(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(encodedLength(value))
        encode(value, into: &bytes)
        return bytes
    }

    /// Decodes a varint at the start of `bytes`.
    ///
    /// - Returns: the value and the number of bytes it took, or `nil` when `bytes` ends before the
    ///   varint does (more input is needed).
    /// - Throws: ``WireError`` `.varintOverflow` or `.varintNotMinimal`.
    public static func decode<Bytes: Collection>(prefixOf bytes: Bytes) throws -> (value: UInt64, length: Int)?
    where Bytes.Element == UInt8 {
        var value: UInt64 = 0
        var length = 0
        for byte in bytes {
            if length == maximumLength {
                throw WireError(.varintOverflow, "varint longer than \(maximumLength) bytes")
            }
            value |= UInt64(byte & 0x7F) << (7 * UInt64(length))
            length += 1
            if byte & 0x80 == 0 {
                if byte == 0 && length > 1 {
                    throw WireError(.varintNotMinimal, "varint has a redundant trailing zero byte")
                }
                return (value, length)
            }
        }
        // A 9-byte prefix with the continuation bit still set can never become valid.
        if length == maximumLength {
            throw WireError(.varintOverflow, "varint longer than \(maximumLength) bytes")
        }
        return nil
    }
}

extension ByteBuffer {
    /// Reads a multiformats varint, moving the reader index only when a whole varint was read.
    ///
    /// - Returns: the value, or `nil` if the buffer ends inside the varint.
    /// - Throws: ``WireError`` for an over-long or non-minimal varint; the reader index is unchanged.
    public mutating func readVarint() throws -> UInt64? {
        guard let (value, length) = try Varint.decode(prefixOf: self.readableBytesView) else { return nil }
        self.moveReaderIndex(forwardBy: length)
        return value
    }

    /// Writes `value` as a multiformats varint.
    ///
    /// - Returns: the number of bytes written.
    @discardableResult
    public mutating func writeVarint(_ value: UInt64) -> Int {
        precondition(value <= Varint.maximumValue, "varint value \(value) exceeds 2^63 - 1")
        var rest = value
        var written = 0
        while rest >= 0x80 {
            written += self.writeInteger(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        written += self.writeInteger(UInt8(rest))
        return written
    }

    /// Reads a varint length prefix and the message after it, as one unit.
    ///
    /// This is the framing libp2p uses for protobuf RPC messages (identify, relay, DCUtR, AutoNAT).
    /// - Parameter maximumLength: the largest message accepted; checked before any allocation.
    /// - Returns: the message bytes, or `nil` if the whole frame has not arrived yet.
    /// - Throws: ``WireError`` `.tooLarge` or a varint error; the reader index is unchanged.
    public mutating func readLengthPrefixedMessage(maximumLength: Int) throws -> ByteBuffer? {
        var copy = self
        guard let length = try copy.readVarint() else { return nil }
        guard length <= UInt64(maximumLength) else {
            throw WireError(.tooLarge, "message of \(length) bytes exceeds the maximum of \(maximumLength)")
        }
        guard let message = copy.readSlice(length: Int(length)) else { return nil }
        self = copy
        return message
    }
}
