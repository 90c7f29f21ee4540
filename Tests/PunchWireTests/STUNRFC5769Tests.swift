import NIOCore
import Testing

@testable import PunchWire

/// Parses whitespace-separated hex bytes, as the RFC 5769 vectors are printed.
func stunHex(_ text: String) -> [UInt8] {
    text.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { UInt8($0, radix: 16)! }
}

/// The four sample messages of RFC 5769 §2, typed in from the RFC text. Their MESSAGE-INTEGRITY
/// and FINGERPRINT values double as a check on the typing: a wrong byte makes them fail.
@Suite struct STUNRFC5769Tests {
    static let transactionID = stunHex("b7 e7 a7 01 bc 34 d6 86 fa 87 df ae")
    static let shortTermPassword = "VOkJxbRl1RmTxUk/WvJxBt"

    // RFC 5769 §2.1: sample request. Padding of USERNAME is spaces (0x20).
    static let request = stunHex("""
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf
        """)

    // RFC 5769 §2.2: sample IPv4 response. Padding of SOFTWARE is a space.
    static let ipv4Response = stunHex("""
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96
        """)

    // RFC 5769 §2.3: sample IPv6 response.
    static let ipv6Response = stunHex("""
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c
        """)

    // RFC 5769 §2.4: sample request with long-term authentication. Padding is zero.
    static let longTermRequest = stunHex("""
        00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
        """)

    /// Leaves out the attributes the encoder computes.
    static func withoutComputed(_ message: STUNMessage) -> STUNMessage {
        var copy = message
        copy.attributes.removeAll {
            switch $0 {
            case .messageIntegrity, .messageIntegritySHA256, .fingerprint: true
            default: false
            }
        }
        return copy
    }

    static func encode(_ message: STUNMessage, integrity: STUNIntegrity?, fingerprint: Bool, paddingByte: UInt8) throws -> [UInt8] {
        var buffer = ByteBuffer()
        try message.encode(into: &buffer, integrity: integrity, fingerprint: fingerprint, paddingByte: paddingByte)
        return Array(buffer.readableBytesView)
    }

    @Test func sampleRequest() throws {
        let message = try STUNMessage.decode(datagram: Self.request)
        #expect(message.type == .bindingRequest)
        #expect(message.transactionID.bytes == Self.transactionID)
        #expect(message.software == "STUN test client")
        #expect(message.username == "evtj:h6vY")
        #expect(message.attributes[1] == .unknown(type: 0x0024, value: stunHex("6e 00 01 ff")))  // PRIORITY
        #expect(message.attributes[2] == .unknown(type: 0x8029, value: stunHex("93 2f f9 b1 51 26 3b 36")))  // ICE-CONTROLLED
        #expect(message.attributes.last == .fingerprint(0xE57A_3BCF))
        #expect(message.hasFingerprint)
        #expect(message.hasMessageIntegrity)
        // PRIORITY is comprehension-required and not STUN's business: reported, as RFC 8489 §15 wants.
        #expect(message.unknownComprehensionRequiredAttributes == [0x0024])

        let key = STUNCredentials.shortTerm(password: Self.shortTermPassword)
        #expect(try message.verifyIntegrity(key: key) == .sha1)
        #expect(throws: WireError(.badIntegrity, "")) { try message.verifyIntegrity(key: .shortTerm(password: "wrong")) }

        // Verbatim, and with MESSAGE-INTEGRITY and FINGERPRINT recomputed: byte for byte.
        #expect(try Self.encode(message, integrity: nil, fingerprint: false, paddingByte: 0x20) == Self.request)
        let recomputed = try Self.encode(Self.withoutComputed(message), integrity: .sha1(key), fingerprint: true, paddingByte: 0x20)
        #expect(recomputed == Self.request)
    }

    @Test func sampleIPv4Response() throws {
        let message = try STUNMessage.decode(datagram: Self.ipv4Response)
        #expect(message.type == .bindingSuccessResponse)
        #expect(message.transactionID.bytes == Self.transactionID)
        #expect(message.software == "test vector")
        #expect(message.xorMappedAddress == IPEndpoint(address: try IPAddress("192.0.2.1"), port: 32853))
        #expect(message.hasFingerprint)
        #expect(message.unknownComprehensionRequiredAttributes.isEmpty)

        let key = STUNCredentials.shortTerm(password: Self.shortTermPassword)
        #expect(try message.verifyIntegrity(key: key) == .sha1)

        #expect(try Self.encode(message, integrity: nil, fingerprint: false, paddingByte: 0x20) == Self.ipv4Response)
        let recomputed = try Self.encode(Self.withoutComputed(message), integrity: .sha1(key), fingerprint: true, paddingByte: 0x20)
        #expect(recomputed == Self.ipv4Response)
    }

    @Test func sampleIPv6Response() throws {
        let message = try STUNMessage.decode(datagram: Self.ipv6Response)
        #expect(message.type == .bindingSuccessResponse)
        #expect(message.software == "test vector")
        let expected = IPEndpoint(address: try IPAddress("2001:db8:1234:5678:11:2233:4455:6677"), port: 32853)
        #expect(message.xorMappedAddress == expected)
        #expect(message.hasFingerprint)

        let key = STUNCredentials.shortTerm(password: Self.shortTermPassword)
        #expect(try message.verifyIntegrity(key: key) == .sha1)

        #expect(try Self.encode(message, integrity: nil, fingerprint: false, paddingByte: 0x20) == Self.ipv6Response)
        let recomputed = try Self.encode(Self.withoutComputed(message), integrity: .sha1(key), fingerprint: true, paddingByte: 0x20)
        #expect(recomputed == Self.ipv6Response)
    }

    @Test func sampleLongTermRequest() throws {
        let message = try STUNMessage.decode(datagram: Self.longTermRequest)
        #expect(message.type == .bindingRequest)
        #expect(message.transactionID.bytes == stunHex("78 ad 34 33 c6 ad 72 c0 29 da 41 2e"))
        let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}"
        #expect(message.username == username)
        #expect(message.nonce == "f//499k954d6OL34oL9FSTvy64sA")
        #expect(message.realm == "example.org")
        #expect(!message.hasFingerprint)

        // RFC 5769 §2.4: "TheMatrIX" is the password after SASLprep.
        let key = STUNCredentials.longTerm(username: username, realm: "example.org", password: "TheMatrIX")
        #expect(try message.verifyIntegrity(key: key) == .sha1)
        #expect(throws: WireError(.badIntegrity, "")) {
            try message.verifyIntegrity(key: .longTerm(username: username, realm: "example.org", password: "thematrix"))
        }

        // Zero padding, so the public encoder reproduces it exactly.
        #expect(try message.encoded() == Self.longTermRequest)
        #expect(try Self.withoutComputed(message).encoded(integrity: .sha1(key)) == Self.longTermRequest)
    }

    @Test func paddingContentIsIgnored() throws {
        // Same request as §2.1 with zero padding instead of spaces (FINGERPRINT and integrity
        // recomputed): decodes to the same message.
        let original = try STUNMessage.decode(datagram: Self.request)
        let key = STUNCredentials.shortTerm(password: Self.shortTermPassword)
        let zeroPadded = try Self.withoutComputed(original).encoded(integrity: .sha1(key), fingerprint: true)
        #expect(zeroPadded != Self.request)
        let decoded = try STUNMessage.decode(datagram: zeroPadded)
        #expect(Self.withoutComputed(decoded) == Self.withoutComputed(original))
        #expect(try decoded.verifyIntegrity(key: key) == .sha1)
    }
}
