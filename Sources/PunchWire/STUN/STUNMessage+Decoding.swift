import NIOCore

extension STUNMessage {
    /// Reads one whole STUN message from the front of `buffer`.
    ///
    /// The header's length field frames the message, so the same function decodes a UDP datagram
    /// and splits STUN over TCP (RFC 8489 §6.2.2): call it again as bytes arrive. A FINGERPRINT is
    /// verified here; message integrity is verified with ``verifyIntegrity(key:)``.
    ///
    /// Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, and
    /// after MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT, must be framed correctly but are
    /// otherwise ignored and left out of ``attributes`` (RFC 8489 §14.5, §14.6): they are not
    /// covered by the HMAC, so nothing in them can be trusted.
    /// - Parameters:
    ///   - buffer: the received bytes; the reader index moves past the message only on success.
    ///   - maximumLength: the largest whole message (header included) accepted; checked from the
    ///     header before waiting for or copying the rest.
    /// - Returns: the message, or `nil` if `buffer` does not yet hold the whole message.
    /// - Throws: ``WireError``: `.notSTUN` if the leading bits, magic cookie or length alignment
    ///   are wrong; `.tooLarge` above `maximumLength`; `.truncated` if an attribute runs past the
    ///   message end; `.malformedAttribute` for a bad attribute value or a FINGERPRINT that is not
    ///   last; `.badFingerprint` if the FINGERPRINT does not match. The reader index is unchanged.
    public static func decode(from buffer: inout ByteBuffer, maximumLength: Int = defaultMaximumLength) throws -> STUNMessage? {
        guard buffer.readableBytes >= headerLength else { return nil }
        let start = buffer.readerIndex
        let header = buffer.getBytes(at: start, length: headerLength)!
        let length = try checkHeader(header[...], maximumLength: maximumLength)
        guard buffer.readableBytes >= headerLength + length else { return nil }
        let bytes = buffer.getBytes(at: start, length: headerLength + length)!
        let message = try parse(bytes)
        buffer.moveReaderIndex(forwardBy: bytes.count)
        return message
    }

    /// Decodes a datagram that must hold exactly one whole STUN message, as STUN over UDP does.
    ///
    /// - Parameters:
    ///   - datagram: the received datagram.
    ///   - maximumLength: the largest message accepted.
    /// - Returns: the message.
    /// - Throws: ``WireError``: `.truncated` if the datagram is shorter than its header says,
    ///   `.trailingBytes` if it is longer, otherwise as ``decode(from:maximumLength:)``.
    public static func decode(datagram: [UInt8], maximumLength: Int = defaultMaximumLength) throws -> STUNMessage {
        guard datagram.count >= headerLength else {
            throw WireError(.truncated, "a STUN message has a 20-byte header; the datagram has \(datagram.count) bytes")
        }
        let length = try checkHeader(datagram[..<headerLength], maximumLength: maximumLength)
        let total = headerLength + length
        guard datagram.count >= total else {
            throw WireError(.truncated, "the STUN header announces \(total) bytes; the datagram has \(datagram.count)")
        }
        guard datagram.count == total else {
            throw WireError(.trailingBytes, "\(datagram.count - total) bytes follow the \(total)-byte STUN message")
        }
        return try parse(datagram)
    }

    /// Checks the fixed header fields and returns the attribute length.
    private static func checkHeader(_ header: ArraySlice<UInt8>, maximumLength: Int) throws -> Int {
        let base = header.startIndex
        // RFC 8489 §5: the two most significant bits are zero; they tell STUN from other protocols.
        guard header[base] & 0xC0 == 0 else {
            throw WireError(.notSTUN, "the first two bits of a STUN message are zero")
        }
        let cookie = header[(base + 4)..<(base + 8)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard cookie == magicCookie else {
            throw WireError(.notSTUN, "magic cookie is 0x\(String(cookie, radix: 16)), not 0x2112a442")
        }
        let length = Int(header[base + 2]) << 8 | Int(header[base + 3])
        // Every attribute is padded to 4 bytes, so the total always is a multiple of 4.
        guard length % 4 == 0 else {
            throw WireError(.notSTUN, "STUN message length \(length) is not a multiple of 4")
        }
        guard headerLength + length <= maximumLength else {
            throw WireError(.tooLarge, "STUN message of \(headerLength + length) bytes exceeds the maximum of \(maximumLength)")
        }
        return length
    }

    /// Parses a whole message whose header has been checked.
    private static func parse(_ bytes: [UInt8]) throws -> STUNMessage {
        let type = STUNMessageType(rawValue: UInt16(bytes[0]) << 8 | UInt16(bytes[1]))!
        let transactionID = try STUNTransactionID(bytes: bytes[8..<headerLength])
        var attributes: [STUNAttribute] = []
        var received = Received(bytes: bytes)

        var offset = headerLength
        while offset < bytes.count {
            // `offset` and the length are multiples of 4, so the 4-byte attribute header fits.
            let attributeType = UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
            let valueLength = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
            let valueStart = offset + 4
            let next = valueStart + (valueLength + 3) / 4 * 4
            guard next <= bytes.count else {
                throw WireError(
                    .truncated,
                    "attribute 0x\(String(attributeType, radix: 16)) of \(valueLength) bytes runs past the end of the \(bytes.count)-byte message")
            }
            let value = bytes[valueStart..<(valueStart + valueLength)]

            if attributeType == STUNAttributeType.fingerprint {
                guard next == bytes.count else {
                    throw WireError(.malformedAttribute, "FINGERPRINT must be the last attribute (RFC 8489 §14.7)")
                }
                let attribute = try STUNAttribute.decode(type: attributeType, value: value, transactionID: transactionID)
                // FINGERPRINT is last, so the header length already covers it, as §14.7 requires.
                let expected = STUNCRC32.checksum(bytes[..<offset]) ^ fingerprintXOR
                guard attribute == .fingerprint(expected) else {
                    throw WireError(.badFingerprint, "FINGERPRINT does not match the message")
                }
                attributes.append(attribute)
            } else if received.integritySHA256Offset != nil
                || (received.integrityOffset != nil && attributeType != STUNAttributeType.messageIntegritySHA256)
            {
                // Not covered by the HMAC: ignored, as RFC 8489 §14.5 and §14.6 require.
            } else {
                let attribute = try STUNAttribute.decode(type: attributeType, value: value, transactionID: transactionID)
                switch attributeType {
                case STUNAttributeType.messageIntegrity: received.integrityOffset = offset
                case STUNAttributeType.messageIntegritySHA256: received.integritySHA256Offset = offset
                default: break
                }
                attributes.append(attribute)
            }
            offset = next
        }

        var message = STUNMessage(type: type, transactionID: transactionID, attributes: attributes)
        message.received = received
        return message
    }
}
