import NIOCore

/// One STUN attribute (RFC 8489 §14, RFC 5780 §7).
///
/// Address attributes carry an ``IPEndpoint``; XOR-MAPPED-ADDRESS is stored un-XORed, the codec
/// applies the magic cookie and transaction ID on the wire. Attribute types this codec does not
/// understand are kept as ``unknown(type:value:)`` so nothing is lost.
///
/// You rarely build ``messageIntegrity(_:)``, ``messageIntegritySHA256(_:)`` or
/// ``fingerprint(_:)`` yourself: pass ``STUNIntegrity`` and `fingerprint: true` to
/// ``STUNMessage/encode(into:integrity:fingerprint:)`` and the encoder computes them.
public enum STUNAttribute: Hashable, Sendable {
    /// MAPPED-ADDRESS (RFC 8489 §14.1): the reflexive address, un-obfuscated (RFC 3489 servers).
    case mappedAddress(IPEndpoint)
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the reflexive address, as the client's NAT mapped it.
    case xorMappedAddress(IPEndpoint)
    /// USERNAME (RFC 8489 §14.3): fewer than 509 bytes of UTF-8 when sent; up to 763 accepted.
    case username(String)
    /// REALM (RFC 8489 §14.9): fewer than 128 characters, at most 763 bytes.
    case realm(String)
    /// NONCE (RFC 8489 §14.10): fewer than 128 characters, at most 763 bytes.
    case nonce(String)
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5): a 20-byte HMAC-SHA1.
    case messageIntegrity([UInt8])
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6): an HMAC-SHA256, possibly truncated to 16-32
    /// bytes in steps of 4.
    case messageIntegritySHA256([UInt8])
    /// FINGERPRINT (RFC 8489 §14.7): CRC-32 of the message XOR 0x5354554E.
    case fingerprint(UInt32)
    /// ERROR-CODE (RFC 8489 §14.8).
    case errorCode(STUNErrorCode)
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13): the types that caused a 420 error response.
    case unknownAttributes([UInt16])
    /// SOFTWARE (RFC 8489 §14.14): fewer than 128 characters, at most 763 bytes.
    case software(String)
    /// ALTERNATE-SERVER (RFC 8489 §14.15): the server to try instead, with 300 Try Alternate.
    case alternateServer(IPEndpoint)
    /// CHANGE-REQUEST (RFC 5780 §7.2): ask the server to answer from its other IP and/or port.
    case changeRequest(changeIP: Bool, changePort: Bool)
    /// RESPONSE-ORIGIN (RFC 5780 §7.3): the address the response was sent from.
    case responseOrigin(IPEndpoint)
    /// OTHER-ADDRESS (RFC 5780 §7.4): the server's alternate IP and port.
    case otherAddress(IPEndpoint)
    /// RESPONSE-PORT (RFC 5780 §7.5): the port the response should be sent to.
    case responsePort(UInt16)
    /// PADDING (RFC 5780 §7.6): `length` bytes whose content does not matter (sent as zeros).
    case padding(length: Int)
    /// Any other attribute, with its value exactly as received (without the alignment padding).
    case unknown(type: UInt16, value: [UInt8])

    /// The attribute type code (see ``STUNAttributeType``).
    public var type: UInt16 {
        switch self {
        case .mappedAddress: STUNAttributeType.mappedAddress
        case .xorMappedAddress: STUNAttributeType.xorMappedAddress
        case .username: STUNAttributeType.username
        case .realm: STUNAttributeType.realm
        case .nonce: STUNAttributeType.nonce
        case .messageIntegrity: STUNAttributeType.messageIntegrity
        case .messageIntegritySHA256: STUNAttributeType.messageIntegritySHA256
        case .fingerprint: STUNAttributeType.fingerprint
        case .errorCode: STUNAttributeType.errorCode
        case .unknownAttributes: STUNAttributeType.unknownAttributes
        case .software: STUNAttributeType.software
        case .alternateServer: STUNAttributeType.alternateServer
        case .changeRequest: STUNAttributeType.changeRequest
        case .responseOrigin: STUNAttributeType.responseOrigin
        case .otherAddress: STUNAttributeType.otherAddress
        case .responsePort: STUNAttributeType.responsePort
        case .padding: STUNAttributeType.padding
        case .unknown(let type, _): type
        }
    }

    // MARK: - Limits

    /// USERNAME must be fewer than 509 bytes when sent (RFC 8489 §14.3).
    static let usernameSendLimit = 508
    /// Receivers must accept USERNAME and the other text attributes up to 763 bytes (RFC 8489
    /// §14.3, §14.8-§14.10, §14.14), the RFC 5389 limit.
    static let textByteLimit = 763
    /// REALM, NONCE, SOFTWARE and the ERROR-CODE reason are fewer than 128 characters.
    static let textCharacterLimit = 127

    /// The XOR mask for X-Address: magic cookie then transaction ID (RFC 8489 §14.2).
    private static func xorMask(_ transactionID: STUNTransactionID) -> [UInt8] {
        [0x21, 0x12, 0xA4, 0x42] + transactionID.bytes
    }

    // MARK: - Encoding

    /// Writes type, length, value and alignment padding.
    ///
    /// - Throws: ``WireError`` `.malformedAttribute` for a value that RFC 8489 or RFC 5780 forbids
    ///   sending; nothing is written then.
    func write(into buffer: inout ByteBuffer, transactionID: STUNTransactionID, paddingByte: UInt8) throws {
        let value = try encodedValue(transactionID: transactionID)
        guard value.count <= Int(UInt16.max) else {
            throw WireError(.malformedAttribute, "attribute 0x\(String(type, radix: 16)) value of \(value.count) bytes exceeds 65535")
        }
        buffer.writeInteger(type)
        buffer.writeInteger(UInt16(value.count))
        buffer.writeBytes(value)
        // RFC 8489 §14: values are padded to a multiple of 4 bytes; the length field excludes padding.
        let paddingCount = (4 - value.count % 4) % 4
        buffer.writeRepeatingByte(paddingByte, count: paddingCount)
    }

    private func encodedValue(transactionID: STUNTransactionID) throws -> [UInt8] {
        switch self {
        case .mappedAddress(let endpoint), .alternateServer(let endpoint),
            .responseOrigin(let endpoint), .otherAddress(let endpoint):
            return Self.encodeAddress(endpoint, mask: nil)
        case .xorMappedAddress(let endpoint):
            return Self.encodeAddress(endpoint, mask: Self.xorMask(transactionID))
        case .username(let text):
            guard text.utf8.count <= Self.usernameSendLimit else {
                throw WireError(.malformedAttribute, "USERNAME of \(text.utf8.count) bytes: RFC 8489 §14.3 requires fewer than 509")
            }
            return Array(text.utf8)
        case .realm(let text):
            return try Self.checkedText(text, name: "REALM")
        case .nonce(let text):
            return try Self.checkedText(text, name: "NONCE")
        case .software(let text):
            return try Self.checkedText(text, name: "SOFTWARE")
        case .messageIntegrity(let code):
            guard code.count == 20 else {
                throw WireError(.malformedAttribute, "MESSAGE-INTEGRITY is 20 bytes, not \(code.count)")
            }
            return code
        case .messageIntegritySHA256(let code):
            guard Self.isValidSHA256Length(code.count) else {
                throw WireError(.malformedAttribute, "MESSAGE-INTEGRITY-SHA256 is 16-32 bytes in steps of 4, not \(code.count)")
            }
            return code
        case .fingerprint(let value):
            return Self.bigEndianBytes(value)
        case .errorCode(let error):
            guard (STUNErrorCode.minimumCode...STUNErrorCode.maximumCode).contains(error.code) else {
                throw WireError(.malformedAttribute, "ERROR-CODE \(error.code) is outside 300-699 (RFC 8489 §14.8)")
            }
            let reason = try Self.checkedText(error.reason, name: "ERROR-CODE reason phrase")
            return [0, 0, UInt8(error.code / 100), UInt8(error.code % 100)] + reason
        case .unknownAttributes(let types):
            return types.flatMap { [UInt8(truncatingIfNeeded: $0 >> 8), UInt8(truncatingIfNeeded: $0)] }
        case .changeRequest(let changeIP, let changePort):
            return [0, 0, 0, (changeIP ? 0x04 : 0) | (changePort ? 0x02 : 0)]
        case .responsePort(let port):
            // RFC 5780 §7.5: the port followed by 2 bytes of padding, as part of the value.
            return [UInt8(truncatingIfNeeded: port >> 8), UInt8(truncatingIfNeeded: port), 0, 0]
        case .padding(let length):
            guard (0...Int(UInt16.max)).contains(length) else {
                throw WireError(.malformedAttribute, "PADDING length \(length) is outside 0-65535")
            }
            return [UInt8](repeating: 0, count: length)
        case .unknown(_, let value):
            return value
        }
    }

    private static func encodeAddress(_ endpoint: IPEndpoint, mask: [UInt8]?) -> [UInt8] {
        var port = endpoint.port
        var address = endpoint.address.bytes
        if let mask {
            port ^= 0x2112  // the most significant 16 bits of the magic cookie
            for index in address.indices { address[index] ^= mask[index] }
        }
        let family: UInt8 = endpoint.address.isIPv4 ? 0x01 : 0x02
        return [0, family, UInt8(truncatingIfNeeded: port >> 8), UInt8(truncatingIfNeeded: port)] + address
    }

    private static func checkedText(_ text: String, name: String) throws -> [UInt8] {
        let bytes = Array(text.utf8)
        try checkTextLimits(bytes: bytes.count, characters: text.unicodeScalars.count, name: name)
        return bytes
    }

    private static func checkTextLimits(bytes: Int, characters: Int, name: String) throws {
        guard characters <= textCharacterLimit, bytes <= textByteLimit else {
            throw WireError(
                .malformedAttribute,
                "\(name) of \(characters) characters / \(bytes) bytes: RFC 8489 allows fewer than 128 characters, at most 763 bytes")
        }
    }

    static func isValidSHA256Length(_ count: Int) -> Bool {
        (16...32).contains(count) && count % 4 == 0
    }

    private static func bigEndianBytes(_ value: UInt32) -> [UInt8] {
        [UInt8(truncatingIfNeeded: value >> 24), UInt8(truncatingIfNeeded: value >> 16),
         UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)]
    }

    // MARK: - Decoding

    /// Parses one attribute value (without its alignment padding).
    ///
    /// - Throws: ``WireError`` `.malformedAttribute` if the value does not fit the attribute's format.
    static func decode(type: UInt16, value: ArraySlice<UInt8>, transactionID: STUNTransactionID) throws -> STUNAttribute {
        switch type {
        case STUNAttributeType.mappedAddress:
            return .mappedAddress(try decodeAddress(value, mask: nil, name: "MAPPED-ADDRESS"))
        case STUNAttributeType.xorMappedAddress:
            return .xorMappedAddress(try decodeAddress(value, mask: xorMask(transactionID), name: "XOR-MAPPED-ADDRESS"))
        case STUNAttributeType.alternateServer:
            return .alternateServer(try decodeAddress(value, mask: nil, name: "ALTERNATE-SERVER"))
        case STUNAttributeType.responseOrigin:
            return .responseOrigin(try decodeAddress(value, mask: nil, name: "RESPONSE-ORIGIN"))
        case STUNAttributeType.otherAddress:
            return .otherAddress(try decodeAddress(value, mask: nil, name: "OTHER-ADDRESS"))
        case STUNAttributeType.username:
            // RFC 8489 §14.3: send fewer than 509 bytes, but accept up to 763 for RFC 5389 peers.
            guard value.count <= textByteLimit else {
                throw WireError(.malformedAttribute, "USERNAME of \(value.count) bytes exceeds 763")
            }
            return .username(try decodeUTF8(value, name: "USERNAME"))
        case STUNAttributeType.realm:
            return .realm(try decodeLimitedText(value, name: "REALM"))
        case STUNAttributeType.nonce:
            return .nonce(try decodeLimitedText(value, name: "NONCE"))
        case STUNAttributeType.software:
            return .software(try decodeLimitedText(value, name: "SOFTWARE"))
        case STUNAttributeType.messageIntegrity:
            guard value.count == 20 else {
                throw WireError(.malformedAttribute, "MESSAGE-INTEGRITY is 20 bytes, not \(value.count)")
            }
            return .messageIntegrity(Array(value))
        case STUNAttributeType.messageIntegritySHA256:
            guard isValidSHA256Length(value.count) else {
                throw WireError(.malformedAttribute, "MESSAGE-INTEGRITY-SHA256 is 16-32 bytes in steps of 4, not \(value.count)")
            }
            return .messageIntegritySHA256(Array(value))
        case STUNAttributeType.fingerprint:
            guard value.count == 4 else {
                throw WireError(.malformedAttribute, "FINGERPRINT is 4 bytes, not \(value.count)")
            }
            return .fingerprint(value.reduce(0) { $0 << 8 | UInt32($1) })
        case STUNAttributeType.errorCode:
            return .errorCode(try decodeErrorCode(value))
        case STUNAttributeType.unknownAttributes:
            guard value.count % 2 == 0 else {
                throw WireError(.malformedAttribute, "UNKNOWN-ATTRIBUTES has an odd length (\(value.count))")
            }
            var types: [UInt16] = []
            types.reserveCapacity(value.count / 2)
            var index = value.startIndex
            while index < value.endIndex {
                types.append(UInt16(value[index]) << 8 | UInt16(value[index + 1]))
                index += 2
            }
            return .unknownAttributes(types)
        case STUNAttributeType.changeRequest:
            guard value.count == 4 else {
                throw WireError(.malformedAttribute, "CHANGE-REQUEST is 4 bytes, not \(value.count)")
            }
            // RFC 5780 §7.2: flag A (0x4) is "change IP", flag B (0x2) "change port"; the rest is unused.
            let flags = value[value.startIndex + 3]
            return .changeRequest(changeIP: flags & 0x04 != 0, changePort: flags & 0x02 != 0)
        case STUNAttributeType.responsePort:
            // RFC 5780 §7.5 makes the 2 padding bytes part of the value (length 4, as coturn sends);
            // some implementations send length 2 and rely on attribute padding. Accept both.
            guard value.count == 2 || value.count == 4 else {
                throw WireError(.malformedAttribute, "RESPONSE-PORT is 2 or 4 bytes, not \(value.count)")
            }
            return .responsePort(UInt16(value[value.startIndex]) << 8 | UInt16(value[value.startIndex + 1]))
        case STUNAttributeType.padding:
            return .padding(length: value.count)
        default:
            return .unknown(type: type, value: Array(value))
        }
    }

    private static func decodeAddress(_ value: ArraySlice<UInt8>, mask: [UInt8]?, name: String) throws -> IPEndpoint {
        guard value.count >= 4 else {
            throw WireError(.malformedAttribute, "\(name) of \(value.count) bytes is too short")
        }
        let start = value.startIndex
        // The first byte is reserved: RFC 8489 §14.1 says receivers ignore it.
        let family = value[start + 1]
        let addressLength: Int
        switch family {
        case 0x01: addressLength = 4
        case 0x02: addressLength = 16
        default: throw WireError(.malformedAttribute, "\(name) has unknown address family 0x\(String(family, radix: 16))")
        }
        guard value.count == 4 + addressLength else {
            throw WireError(.malformedAttribute, "\(name) for family \(family) must be \(4 + addressLength) bytes, not \(value.count)")
        }
        var port = UInt16(value[start + 2]) << 8 | UInt16(value[start + 3])
        var address = Array(value[(start + 4)...])
        if let mask {
            port ^= 0x2112
            for index in address.indices { address[index] ^= mask[index] }
        }
        return IPEndpoint(address: try IPAddress(bytes: address), port: port)
    }

    private static func decodeErrorCode(_ value: ArraySlice<UInt8>) throws -> STUNErrorCode {
        guard value.count >= 4 else {
            throw WireError(.malformedAttribute, "ERROR-CODE of \(value.count) bytes is too short")
        }
        let start = value.startIndex
        // 21 reserved bits, then the 3-bit class and the 8-bit number (RFC 8489 §14.8).
        let errorClass = Int(value[start + 2] & 0x07)
        let number = Int(value[start + 3])
        guard (3...6).contains(errorClass), number < 100 else {
            throw WireError(.malformedAttribute, "ERROR-CODE class \(errorClass) number \(number) is not a code in 300-699")
        }
        let reason = try decodeLimitedText(value[(start + 4)...], name: "ERROR-CODE reason phrase")
        return STUNErrorCode(code: errorClass * 100 + number, reason: reason)
    }

    private static func decodeLimitedText(_ value: ArraySlice<UInt8>, name: String) throws -> String {
        // Check the byte bound first, so no string is built from an oversized value.
        guard value.count <= textByteLimit else {
            throw WireError(.malformedAttribute, "\(name) of \(value.count) bytes exceeds 763")
        }
        let text = try decodeUTF8(value, name: name)
        try checkTextLimits(bytes: value.count, characters: text.unicodeScalars.count, name: name)
        return text
    }

    private static func decodeUTF8(_ value: ArraySlice<UInt8>, name: String) throws -> String {
        let text = String(decoding: value, as: UTF8.self)
        // String(decoding:) repairs invalid UTF-8 with U+FFFD; a changed byte sequence means it was invalid.
        guard text.utf8.elementsEqual(value) else {
            throw WireError(.malformedAttribute, "\(name) is not valid UTF-8")
        }
        return text
    }
}
