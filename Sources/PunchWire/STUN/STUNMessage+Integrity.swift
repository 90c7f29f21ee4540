extension STUNMessage {
    /// Checks the message-integrity HMAC of a decoded message against `key`.
    ///
    /// When both attributes are present, MESSAGE-INTEGRITY-SHA256 is checked and
    /// MESSAGE-INTEGRITY is not: the stronger one decides (RFC 8489 §9.1.3, §9.2.4). A truncated
    /// MESSAGE-INTEGRITY-SHA256 is compared on its length. The comparison takes the same time
    /// wherever the first difference is.
    ///
    /// The HMAC covers the bytes as received, so this works only on a message from
    /// ``decode(from:maximumLength:)`` or ``decode(datagram:maximumLength:)`` that has not been
    /// changed since (see ``receivedBytes``).
    /// - Parameter key: the short-term or long-term credentials.
    /// - Returns: which HMAC was checked.
    /// - Throws: ``WireError`` `.badIntegrity` if the HMAC does not match, the message has no
    ///   integrity attribute, or the message was not decoded (or changed after decoding).
    @discardableResult
    public func verifyIntegrity(key: STUNCredentials) throws -> STUNIntegrityAlgorithm {
        guard let received else {
            throw WireError(.badIntegrity, "only a decoded, unchanged message can be verified: the HMAC covers the received bytes")
        }
        if let offset = received.integritySHA256Offset {
            try Self.verify(.sha256, at: offset, in: received.bytes, key: key)
            return .sha256
        }
        if let offset = received.integrityOffset {
            try Self.verify(.sha1, at: offset, in: received.bytes, key: key)
            return .sha1
        }
        throw WireError(.badIntegrity, "the message has no MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256")
    }

    /// Recomputes the HMAC of the attribute at `offset` the way RFC 8489 §14.5/§14.6 define it:
    /// over the message before the attribute, with the header length covering the message only up
    /// to and including the attribute (later attributes, such as FINGERPRINT, are excluded).
    private static func verify(_ algorithm: STUNIntegrityAlgorithm, at offset: Int, in bytes: [UInt8], key: STUNCredentials) throws {
        let valueLength = Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        let received = Array(bytes[(offset + 4)..<(offset + 4 + valueLength)])
        var text = Array(bytes[..<offset])
        let coveredLength = offset + 4 + valueLength - headerLength
        text[2] = UInt8(truncatingIfNeeded: coveredLength >> 8)
        text[3] = UInt8(truncatingIfNeeded: coveredLength)
        let expected = Array(algorithm.authenticationCode(for: text, key: key.key).prefix(valueLength))
        guard STUNIntegrityAlgorithm.constantTimeEqual(expected, received) else {
            throw WireError(.badIntegrity, "\(algorithm) does not match: wrong key or altered message")
        }
    }
}
