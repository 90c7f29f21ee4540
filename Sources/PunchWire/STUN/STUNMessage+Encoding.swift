import NIOCore

extension STUNMessage {
    /// Appends the encoded message to `buffer`, optionally followed by computed
    /// MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT attributes.
    ///
    /// Attributes in ``attributes`` are written in order and as given. When `integrity` is set,
    /// any MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT already in ``attributes``
    /// are left out and recomputed (a FINGERPRINT has to be recomputed once the integrity
    /// attributes change); when only `fingerprint` is set, an existing FINGERPRINT is replaced.
    /// Otherwise such attributes are written verbatim, even if their values are wrong.
    ///
    /// The length field is handled as RFC 8489 §14.5-§14.7 require: each HMAC and the CRC are
    /// computed over the message up to their attribute, with the header length temporarily
    /// covering everything up to and including the attribute being computed.
    /// - Parameters:
    ///   - buffer: the buffer to append to.
    ///   - integrity: the key and HMACs to append, or `nil` for none.
    ///   - fingerprint: whether to append FINGERPRINT (last, RFC 8489 §14.7).
    /// - Throws: ``WireError`` `.malformedAttribute` for an attribute value the RFCs forbid or for
    ///   attributes that would be ignored after MESSAGE-INTEGRITY or follow FINGERPRINT;
    ///   `.tooLarge` if the attributes exceed 65535 bytes. `buffer` is unchanged then.
    public func encode(into buffer: inout ByteBuffer, integrity: STUNIntegrity? = nil, fingerprint: Bool = false) throws {
        try encode(into: &buffer, integrity: integrity, fingerprint: fingerprint, paddingByte: 0)
    }

    /// The encoded message as bytes, e.g. one UDP datagram.
    ///
    /// - Parameters:
    ///   - integrity: the key and HMACs to append, or `nil` for none.
    ///   - fingerprint: whether to append FINGERPRINT.
    /// - Returns: the whole message.
    /// - Throws: ``WireError``, as ``encode(into:integrity:fingerprint:)``.
    public func encoded(integrity: STUNIntegrity? = nil, fingerprint: Bool = false) throws -> [UInt8] {
        var buffer = ByteBuffer()
        try encode(into: &buffer, integrity: integrity, fingerprint: fingerprint)
        return Array(buffer.readableBytesView)
    }

    /// The encoder, with the byte used for alignment padding as a parameter so tests can reproduce
    /// RFC 5769 vectors whose padding is not zero. Padding content is covered by the HMACs and the
    /// CRC, so it has to match for those to match.
    func encode(into buffer: inout ByteBuffer, integrity: STUNIntegrity?, fingerprint: Bool, paddingByte: UInt8) throws {
        let start = buffer.writerIndex
        do {
            try encodeUnchecked(into: &buffer, start: start, integrity: integrity, fingerprint: fingerprint, paddingByte: paddingByte)
        } catch {
            buffer.moveWriterIndex(to: start)
            throw error
        }
    }

    private func encodeUnchecked(
        into buffer: inout ByteBuffer, start: Int, integrity: STUNIntegrity?, fingerprint: Bool, paddingByte: UInt8
    ) throws {
        var attributes = self.attributes
        if integrity != nil {
            attributes.removeAll {
                switch $0 {
                case .messageIntegrity, .messageIntegritySHA256, .fingerprint: true
                default: false
                }
            }
        } else if fingerprint {
            attributes.removeAll { if case .fingerprint = $0 { true } else { false } }
        }
        try Self.checkOrder(attributes)

        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(UInt16(0))  // the length, set below
        buffer.writeInteger(Self.magicCookie)
        buffer.writeBytes(transactionID.bytes)
        for attribute in attributes {
            try attribute.write(into: &buffer, transactionID: transactionID, paddingByte: paddingByte)
        }

        func setLength(including extra: Int) throws {
            let length = buffer.writerIndex - start - Self.headerLength + extra
            guard length <= Int(UInt16.max) else {
                throw WireError(.tooLarge, "STUN attributes of \(length) bytes exceed the 65535 the length field can hold")
            }
            buffer.setInteger(UInt16(length), at: start + 2)
        }

        if let integrity {
            var algorithms: [STUNIntegrityAlgorithm] = []
            if integrity.includesSHA1 { algorithms.append(.sha1) }
            if integrity.includesSHA256 { algorithms.append(.sha256) }
            for algorithm in algorithms {
                // RFC 8489 §14.5/§14.6: the length covers this attribute but not the ones after it.
                try setLength(including: 4 + algorithm.codeLength)
                let text = buffer.getBytes(at: start, length: buffer.writerIndex - start)!
                let code = algorithm.authenticationCode(for: text, key: integrity.credentials.key)
                buffer.writeInteger(algorithm.attributeType)
                buffer.writeInteger(UInt16(code.count))
                buffer.writeBytes(code)  // 20 or 32 bytes: already aligned
            }
        }
        if fingerprint {
            // RFC 8489 §14.7: the CRC covers the message up to FINGERPRINT, with the length
            // including FINGERPRINT.
            try setLength(including: 8)
            let crc = STUNCRC32.checksum(buffer.viewBytes(at: start, length: buffer.writerIndex - start)!)
            buffer.writeInteger(STUNAttributeType.fingerprint)
            buffer.writeInteger(UInt16(4))
            buffer.writeInteger(crc ^ Self.fingerprintXOR)
        }
        try setLength(including: 0)
    }

    /// Refuses attribute orders a receiver would not process as intended: only
    /// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT may follow MESSAGE-INTEGRITY, only FINGERPRINT may
    /// follow MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.5, §14.6), and FINGERPRINT is last (§14.7).
    private static func checkOrder(_ attributes: [STUNAttribute]) throws {
        enum Stage: Int { case body, afterIntegrity, afterIntegritySHA256, afterFingerprint }
        var stage = Stage.body
        for attribute in attributes {
            guard stage != .afterFingerprint else {
                throw WireError(.malformedAttribute, "FINGERPRINT must be the last attribute (RFC 8489 §14.7)")
            }
            switch attribute {
            case .fingerprint:
                stage = .afterFingerprint
            case .messageIntegritySHA256:
                guard stage.rawValue < Stage.afterIntegritySHA256.rawValue else {
                    throw WireError(.malformedAttribute, "only FINGERPRINT may follow MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6)")
                }
                stage = .afterIntegritySHA256
            case .messageIntegrity:
                guard stage == .body else {
                    throw WireError(.malformedAttribute, "MESSAGE-INTEGRITY must come before MESSAGE-INTEGRITY-SHA256 and appear once")
                }
                stage = .afterIntegrity
            default:
                guard stage == .body else {
                    throw WireError(
                        .malformedAttribute,
                        "attribute 0x\(String(attribute.type, radix: 16)) after MESSAGE-INTEGRITY would be ignored by receivers (RFC 8489 §14.5)")
                }
            }
        }
    }
}
