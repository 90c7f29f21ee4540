import NIOCore
import Testing

@testable import PunchWire

@Suite struct STUNAttributeTests {
    static func endpoint(_ text: String) -> IPEndpoint { try! IPEndpoint(text) }

    static let everyKind: [STUNAttribute] = [
        .mappedAddress(endpoint("198.51.100.7:3478")),
        .mappedAddress(endpoint("[2001:db8::1]:65535")),
        .xorMappedAddress(endpoint("203.0.113.10:54321")),
        .xorMappedAddress(endpoint("[2001:db8:1234:5678:11:2233:4455:6677]:1")),
        .username("alice:bob"),
        .username(""),
        .realm("example.org"),
        .nonce("f//499k954d6OL34oL9FSTvy64sA"),
        .errorCode(.unknownAttribute),
        .errorCode(STUNErrorCode(code: 699, reason: "")),
        .unknownAttributes([0x0024, 0x0025, 0x7FFF]),
        .unknownAttributes([0x0024, 0x0025]),
        .software("Punch 0.1 \u{1F44B}"),
        .alternateServer(endpoint("192.0.2.99:3479")),
        .changeRequest(changeIP: true, changePort: false),
        .changeRequest(changeIP: false, changePort: true),
        .changeRequest(changeIP: true, changePort: true),
        .responseOrigin(endpoint("192.0.2.1:3478")),
        .otherAddress(endpoint("[2001:db8::2]:3479")),
        .responsePort(40000),
        .padding(length: 0),
        .padding(length: 7),
        .unknown(type: 0x8029, value: [1, 2, 3, 4, 5]),
        .unknown(type: 0x0024, value: []),
        .messageIntegrity(Array(repeating: 0xAB, count: 20)),
    ]

    @Test(arguments: everyKind)
    func roundTrips(_ attribute: STUNAttribute) throws {
        let message = STUNMessage(type: .bindingSuccessResponse, attributes: [attribute])
        let bytes = try message.encoded()
        #expect(bytes.count % 4 == 0)
        #expect(Int(bytes[2]) << 8 | Int(bytes[3]) == bytes.count - 20)
        let decoded = try STUNMessage.decode(datagram: bytes)
        #expect(decoded.attributes == [attribute])
        #expect(decoded == message)
    }

    @Test func allKindsTogetherWithIntegrityAndFingerprint() throws {
        // MESSAGE-INTEGRITY is recomputed, so leave it out of the body.
        let body = Self.everyKind.filter { if case .messageIntegrity = $0 { false } else { true } }
        let message = STUNMessage(type: .bindingSuccessResponse, attributes: body)
        let key = STUNCredentials.shortTerm(password: "pass")
        let bytes = try message.encoded(integrity: .sha1AndSHA256(key), fingerprint: true)
        let decoded = try STUNMessage.decode(datagram: bytes, maximumLength: 4096)
        #expect(Array(decoded.attributes.prefix(body.count)) == body)
        #expect(decoded.attributes.count == body.count + 3)
        #expect(decoded.hasFingerprint)
        #expect(try decoded.verifyIntegrity(key: key) == .sha256)
    }

    @Test func xorMappedAddressIsObfuscatedOnTheWire() throws {
        let id = try STUNTransactionID(bytes: stunHex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"))
        let message = STUNMessage(type: .bindingSuccessResponse, transactionID: id, attributes: [.xorMappedAddress(Self.endpoint("192.0.2.1:32853"))])
        #expect(Array(try message.encoded().suffix(12)) == stunHex("00 20 00 08 00 01 a1 47 e1 12 a6 43"))
    }

    @Test func wireFormatsOfRFC5780Attributes() throws {
        let id = STUNTransactionID.random()
        func value(_ attribute: STUNAttribute) throws -> [UInt8] {
            Array(try STUNMessage(type: .bindingRequest, transactionID: id, attributes: [attribute]).encoded().dropFirst(20))
        }
        #expect(try value(.changeRequest(changeIP: true, changePort: true)) == stunHex("00 03 00 04 00 00 00 06"))
        #expect(try value(.responsePort(0x1234)) == stunHex("00 27 00 04 12 34 00 00"))
        #expect(try value(.padding(length: 5)) == stunHex("00 26 00 05 00 00 00 00 00 00 00 00"))
        #expect(try value(.errorCode(.unknownAttribute)).prefix(8) == stunHex("00 09 00 15 00 00 04 14")[...])
        #expect(try value(.unknownAttributes([0x0024])) == stunHex("00 0a 00 02 00 24 00 00"))
    }

    @Test func responsePortOfLengthTwoIsAccepted() throws {
        let bytes = stunHex("00 01 00 08 21 12 a4 42 00 00 00 00 00 00 00 00 00 00 00 01 00 27 00 02 ab cd 00 00")
        #expect(try STUNMessage.decode(datagram: bytes).responsePort == 0xABCD)
    }

    @Test func textLimitsFollowRFC8489() throws {
        func encode(_ attribute: STUNAttribute) throws { _ = try STUNMessage(type: .bindingRequest, attributes: [attribute]).encoded() }
        try encode(.username(String(repeating: "u", count: 508)))
        #expect(throws: WireError(.malformedAttribute, "")) { try encode(.username(String(repeating: "u", count: 509))) }
        try encode(.realm(String(repeating: "r", count: 127)))
        #expect(throws: WireError(.malformedAttribute, "")) { try encode(.realm(String(repeating: "r", count: 128))) }
        #expect(throws: WireError(.malformedAttribute, "")) { try encode(.nonce(String(repeating: "n", count: 128))) }
        #expect(throws: WireError(.malformedAttribute, "")) { try encode(.software(String(repeating: "s", count: 128))) }
        #expect(throws: WireError(.malformedAttribute, "")) {
            try encode(.errorCode(STUNErrorCode(code: 400, reason: String(repeating: "e", count: 128))))
        }
        // 127 four-byte characters: 508 bytes, within both limits.
        try encode(.software(String(repeating: "\u{1F600}", count: 127)))

        // Receivers accept USERNAME up to 763 bytes (RFC 5389 compatibility), not more.
        #expect(try decodeRaw(type: 0x0006, value: Array(repeating: 0x75, count: 763)).username?.utf8.count == 763)
        #expect(throws: WireError(.malformedAttribute, "")) { try decodeRaw(type: 0x0006, value: Array(repeating: 0x75, count: 764)) }
        #expect(throws: WireError(.malformedAttribute, "")) { try decodeRaw(type: 0x0014, value: Array(repeating: 0x72, count: 128)) }
        #expect(throws: WireError(.malformedAttribute, "")) { try decodeRaw(type: 0x8022, value: [0xFF, 0xFE]) }  // not UTF-8
    }

    @Test func invalidValuesAreRefusedWhenEncoding() {
        func encode(_ attribute: STUNAttribute) throws { _ = try STUNMessage(type: .bindingRequest, attributes: [attribute]).encoded() }
        #expect(throws: WireError(.malformedAttribute, "")) { try encode(.errorCode(STUNErrorCode(code: 200, reason: "OK"))) }
        #expect(throws: WireError(.malformedAttribute, "")) { try encode(.errorCode(STUNErrorCode(code: 700, reason: ""))) }
        #expect(throws: WireError(.malformedAttribute, "")) { try encode(.messageIntegrity([1, 2, 3])) }
        #expect(throws: WireError(.malformedAttribute, "")) { try encode(.messageIntegritySHA256(Array(repeating: 0, count: 18))) }
        #expect(throws: WireError(.malformedAttribute, "")) { try encode(.padding(length: 70000)) }
    }

    @Test func malformedValuesAreRefusedWhenDecoding() {
        let cases: [(UInt16, [UInt8])] = [
            (0x0001, [0, 3, 0, 1, 1, 2, 3, 4]),  // unknown family
            (0x0001, [0, 1, 0, 1, 1, 2, 3]),  // IPv4 too short
            (0x0020, [0, 2, 0, 1, 1, 2, 3, 4]),  // IPv6 with 4 address bytes
            (0x0008, Array(repeating: 0, count: 16)),  // MESSAGE-INTEGRITY not 20 bytes
            (0x001C, Array(repeating: 0, count: 12)),  // MESSAGE-INTEGRITY-SHA256 below 16
            (0x001C, Array(repeating: 0, count: 36)),  // ... above 32
            (0x0009, [0, 0, 2, 0]),  // ERROR-CODE class 2
            (0x0009, [0, 0, 4, 100]),  // ERROR-CODE number 100
            (0x0009, [0, 0, 4]),  // ERROR-CODE too short
            (0x000A, [0, 1, 0]),  // UNKNOWN-ATTRIBUTES odd
            (0x0003, [0, 0, 6]),  // CHANGE-REQUEST not 4 bytes
            (0x0027, [1]),  // RESPONSE-PORT too short
        ]
        for (type, value) in cases {
            #expect(throws: WireError(.malformedAttribute, ""), "0x\(String(type, radix: 16)) \(value)") {
                try decodeRaw(type: type, value: value)
            }
        }
    }

    @Test func sha256IntegrityMayBeTruncated() throws {
        let key = STUNCredentials.shortTerm(password: "pw")
        let request = STUNMessage(type: .bindingRequest, attributes: [.username("u")])
        let full = try request.encoded(integrity: .sha256(key))
        // Truncate MESSAGE-INTEGRITY-SHA256 to 16 bytes by hand: new length, recomputed HMAC prefix.
        let decoded = try STUNMessage.decode(datagram: full)
        guard case .messageIntegritySHA256(let code) = decoded.attributes.last else {
            Issue.record("no MESSAGE-INTEGRITY-SHA256")
            return
        }
        #expect(code.count == 32)
        var truncated = Array(full.dropLast(32 + 4))
        truncated[3] -= 16
        // The HMAC input has the length covering a 16-byte attribute, so recompute over that.
        let mac = STUNIntegrityAlgorithm.sha256.authenticationCode(for: truncated, key: key.key)
        truncated += [0x00, 0x1C, 0x00, 0x10] + mac.prefix(16)
        let message = try STUNMessage.decode(datagram: truncated)
        #expect(try message.verifyIntegrity(key: key) == .sha256)
        #expect(throws: WireError(.badIntegrity, "")) { try message.verifyIntegrity(key: .shortTerm(password: "other")) }
    }
}

/// Decodes a Binding request with one attribute of the given raw type and value.
@discardableResult
func decodeRaw(type: UInt16, value: [UInt8]) throws -> STUNMessage {
    let padded = value + Array(repeating: 0, count: (4 - value.count % 4) % 4)
    let length = 4 + padded.count
    var bytes: [UInt8] = [0x00, 0x01, UInt8(length >> 8), UInt8(length & 0xFF), 0x21, 0x12, 0xA4, 0x42]
    bytes += Array(repeating: 0x11, count: 12)
    bytes += [UInt8(type >> 8), UInt8(type & 0xFF), UInt8(value.count >> 8), UInt8(value.count & 0xFF)]
    bytes += padded
    return try STUNMessage.decode(datagram: bytes)
}
