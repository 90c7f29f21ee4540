import NIOCore
import Testing

@testable import PunchWire

@Suite struct STUNMessageTests {
    static let key = STUNCredentials.shortTerm(password: "secret")

    static func sampleRequest(fingerprint: Bool = true) throws -> [UInt8] {
        try STUNMessage(type: .bindingRequest, attributes: [.software("Punch test"), .username("a:b")])
            .encoded(integrity: .sha1(key), fingerprint: fingerprint)
    }

    /// A buffer with one already-consumed byte in front, so "unchanged" means reader index 1, not 0.
    static func buffer(_ bytes: [UInt8]) -> ByteBuffer {
        var buffer = ByteBuffer(bytes: [0xEE] + bytes)
        buffer.moveReaderIndex(forwardBy: 1)
        return buffer
    }

    /// Expects `bytes` to be refused with `code`, leaving the reader index where it was.
    static func expectRefused(_ bytes: [UInt8], _ code: WireError.Code, maximumLength: Int = STUNMessage.defaultMaximumLength,
                              sourceLocation: SourceLocation = #_sourceLocation) {
        var buffer = buffer(bytes)
        #expect(throws: WireError(code, ""), sourceLocation: sourceLocation) {
            try STUNMessage.decode(from: &buffer, maximumLength: maximumLength)
        }
        #expect(buffer.readerIndex == 1, sourceLocation: sourceLocation)
        #expect(buffer.readableBytes == bytes.count, sourceLocation: sourceLocation)
    }

    // MARK: - Framing

    @Test func decodesFromABufferAndMovesPastTheMessage() throws {
        let bytes = try Self.sampleRequest()
        var buffer = Self.buffer(bytes + [0x01, 0x02])
        let message = try #require(try STUNMessage.decode(from: &buffer))
        #expect(message.software == "Punch test")
        #expect(message.receivedBytes == bytes)
        #expect(buffer.readableBytes == 2)
    }

    @Test func incompleteMessageIsNilAndLeavesTheBuffer() throws {
        let bytes = try Self.sampleRequest()
        for cut in [0, 1, 19, 20, bytes.count - 1] {
            var buffer = Self.buffer(Array(bytes.prefix(cut)))
            #expect(try STUNMessage.decode(from: &buffer) == nil, "cut at \(cut)")
            #expect(buffer.readerIndex == 1)
        }
        // Bytes arriving in pieces, as on TCP: nil until the whole message is there.
        var stream = ByteBuffer()
        stream.writeBytes(bytes.prefix(30))
        #expect(try STUNMessage.decode(from: &stream) == nil)
        stream.writeBytes(bytes.dropFirst(30))
        stream.writeBytes(bytes)
        #expect(try STUNMessage.decode(from: &stream) != nil)
        #expect(try STUNMessage.decode(from: &stream) != nil)
        #expect(try STUNMessage.decode(from: &stream) == nil)
        #expect(stream.readableBytes == 0)
    }

    @Test func datagramMustHoldExactlyOneMessage() throws {
        let bytes = try Self.sampleRequest()
        #expect(throws: WireError(.trailingBytes, "")) { try STUNMessage.decode(datagram: bytes + [0]) }
        #expect(throws: WireError(.truncated, "")) { try STUNMessage.decode(datagram: Array(bytes.dropLast(4))) }
        #expect(throws: WireError(.truncated, "")) { try STUNMessage.decode(datagram: Array(bytes.prefix(10))) }
    }

    // MARK: - Bad input

    @Test func badMagicCookieIsNotSTUN() throws {
        var bytes = try Self.sampleRequest()
        bytes[5] ^= 0x01
        Self.expectRefused(bytes, .notSTUN)
    }

    @Test func leadingBitsSetIsNotSTUN() throws {
        var bytes = try Self.sampleRequest()
        bytes[0] |= 0x80
        Self.expectRefused(bytes, .notSTUN)
        bytes[0] = 0x40
        Self.expectRefused(bytes, .notSTUN)
    }

    @Test func lengthNotAMultipleOfFourIsNotSTUN() throws {
        var bytes = try Self.sampleRequest()
        bytes[3] += 2
        Self.expectRefused(bytes + [0, 0], .notSTUN)
    }

    @Test func attributeRunningPastTheEndIsTruncated() throws {
        // A SOFTWARE attribute claiming 16 bytes in an 8-byte body.
        let bytes = stunHex("00 01 00 08 21 12 a4 42 00 00 00 00 00 00 00 00 00 00 00 01 80 22 00 10 41 42 43 44")
        Self.expectRefused(bytes, .truncated)
        // Padding counts: the second 5-byte value needs 8 bytes of room and has none.
        Self.expectRefused(stunHex("00 01 00 10 21 12 a4 42 00 00 00 00 00 00 00 00 00 00 00 01 80 22 00 05 41 42 43 44 45 00 00 00 80 22 00 05"), .truncated)
    }

    @Test func oversizedMessageIsRefusedFromItsHeader() throws {
        // Header says 2000 bytes of attributes; only the header has arrived.
        let header = stunHex("00 01 07 d0 21 12 a4 42 00 00 00 00 00 00 00 00 00 00 00 01")
        Self.expectRefused(header, .tooLarge)
        let bytes = try Self.sampleRequest()
        Self.expectRefused(bytes, .tooLarge, maximumLength: bytes.count - 4)
        var buffer = Self.buffer(bytes)
        #expect(try STUNMessage.decode(from: &buffer, maximumLength: bytes.count) != nil)
    }

    @Test func badFingerprintIsRefused() throws {
        var bytes = try Self.sampleRequest()
        bytes[bytes.count - 1] ^= 0x01
        Self.expectRefused(bytes, .badFingerprint)
        // A changed byte elsewhere is caught too (the SOFTWARE text).
        var altered = try Self.sampleRequest()
        altered[24] ^= 0x20
        Self.expectRefused(altered, .badFingerprint)
    }

    @Test func fingerprintMustBeLast() throws {
        let message = STUNMessage(type: .bindingRequest, attributes: [.software("x")])
        let bytes = try message.encoded(fingerprint: true)
        // Move FINGERPRINT in front of SOFTWARE and fix nothing else.
        let reordered = Array(bytes.prefix(20)) + Array(bytes.suffix(8)) + Array(bytes[20..<(bytes.count - 8)])
        Self.expectRefused(reordered, .malformedAttribute)
        #expect(throws: WireError(.malformedAttribute, "")) {
            try STUNMessage(type: .bindingRequest, attributes: [.fingerprint(0), .software("x")]).encoded()
        }
    }

    @Test func malformedAttributeLeavesTheBuffer() {
        // XOR-MAPPED-ADDRESS with family 3.
        Self.expectRefused(stunHex("01 01 00 0c 21 12 a4 42 00 00 00 00 00 00 00 00 00 00 00 01 00 20 00 08 00 03 00 01 01 02 03 04"),
                           .malformedAttribute)
    }

    @Test func unknownComprehensionRequiredAttributesAreReported() throws {
        let message = STUNMessage(type: .bindingRequest, attributes: [
            .unknown(type: 0x0024, value: [0, 0, 0, 1]),
            .unknown(type: 0x8029, value: Array(repeating: 7, count: 8)),
            .unknown(type: 0x7ABC, value: []),
            .unknown(type: 0x0024, value: [0, 0, 0, 2]),
            .software("x"),
        ])
        let decoded = try STUNMessage.decode(datagram: try message.encoded())
        #expect(decoded.unknownComprehensionRequiredAttributes == [0x0024, 0x7ABC])
        #expect(STUNMessage(type: .bindingRequest, attributes: [.unknown(type: 0x8029, value: [])]).unknownComprehensionRequiredAttributes.isEmpty)
    }

    // MARK: - Integrity

    @Test func wrongIntegrityKeyIsRefused() throws {
        let message = try STUNMessage.decode(datagram: try Self.sampleRequest())
        #expect(try message.verifyIntegrity(key: Self.key) == .sha1)
        #expect(throws: WireError(.badIntegrity, "")) { try message.verifyIntegrity(key: .shortTerm(password: "Secret")) }
    }

    @Test func alteredMessageWithoutFingerprintFailsIntegrity() throws {
        var bytes = try Self.sampleRequest(fingerprint: false)
        bytes[24] ^= 0x20
        let message = try STUNMessage.decode(datagram: bytes)
        #expect(throws: WireError(.badIntegrity, "")) { try message.verifyIntegrity(key: Self.key) }
    }

    @Test func integrityOfEveryAlgorithmChoiceVerifies() throws {
        let request = STUNMessage(type: .bindingRequest, attributes: [.username("user")])
        for (integrity, expected) in [(STUNIntegrity.sha1(Self.key), STUNIntegrityAlgorithm.sha1),
                                      (.sha256(Self.key), .sha256), (.sha1AndSHA256(Self.key), .sha256)] {
            for fingerprint in [false, true] {
                let decoded = try STUNMessage.decode(datagram: try request.encoded(integrity: integrity, fingerprint: fingerprint))
                #expect(try decoded.verifyIntegrity(key: Self.key) == expected)
                #expect(decoded.hasFingerprint == fingerprint)
                #expect(decoded.hasMessageIntegrity)
                #expect(throws: WireError(.badIntegrity, "")) { try decoded.verifyIntegrity(key: .shortTerm(password: "x")) }
            }
        }
    }

    @Test func integrityNeedsReceivedUnchangedBytes() throws {
        let built = STUNMessage(type: .bindingRequest, attributes: [.messageIntegrity(Array(repeating: 0, count: 20))])
        #expect(throws: WireError(.badIntegrity, "")) { try built.verifyIntegrity(key: Self.key) }

        var decoded = try STUNMessage.decode(datagram: try Self.sampleRequest())
        #expect(decoded.receivedBytes != nil)
        decoded.attributes.insert(.software("changed"), at: 0)
        #expect(decoded.receivedBytes == nil)
        #expect(throws: WireError(.badIntegrity, "")) { try decoded.verifyIntegrity(key: Self.key) }

        let plain = try STUNMessage.decode(datagram: try STUNMessage(type: .bindingRequest).encoded())
        #expect(throws: WireError(.badIntegrity, "")) { try plain.verifyIntegrity(key: Self.key) }
    }

    @Test func attributesAfterMessageIntegrityAreIgnored() throws {
        // MESSAGE-INTEGRITY then SOFTWARE, built by hand: the length field includes SOFTWARE.
        let withIntegrity = try STUNMessage(type: .bindingRequest, attributes: [.username("u")]).encoded(integrity: .sha1(Self.key))
        var bytes = withIntegrity + stunHex("80 22 00 04 65 76 69 6c")
        bytes[3] += 8
        let message = try STUNMessage.decode(datagram: bytes)
        #expect(message.software == nil)
        #expect(message.attributes.count == 2)
        // The HMAC covers only what comes before it; the trailing attribute does not break it.
        #expect(try message.verifyIntegrity(key: Self.key) == .sha1)
        // ... and a malformed attribute there is not even parsed.
        var malformed = withIntegrity + stunHex("00 20 00 04 00 09 00 00")
        malformed[3] += 8
        #expect(try STUNMessage.decode(datagram: malformed).attributes.count == 2)
        // The encoder refuses to produce such a message.
        #expect(throws: WireError(.malformedAttribute, "")) {
            try STUNMessage(type: .bindingRequest, attributes: [.messageIntegrity(Array(repeating: 0, count: 20)), .software("x")]).encoded()
        }
    }

    @Test func encoderReplacesComputedAttributes() throws {
        let decoded = try STUNMessage.decode(datagram: try Self.sampleRequest())
        let other = STUNCredentials.shortTerm(password: "other")
        let reencoded = try STUNMessage.decode(datagram: try decoded.encoded(integrity: .sha1(other), fingerprint: true))
        #expect(reencoded.attributes.count == decoded.attributes.count)
        #expect(try reencoded.verifyIntegrity(key: other) == .sha1)
        // Fingerprint only: the old one is replaced, MESSAGE-INTEGRITY kept verbatim and still valid.
        let refingerprinted = try STUNMessage.decode(datagram: try decoded.encoded(fingerprint: true))
        #expect(try refingerprinted.verifyIntegrity(key: Self.key) == .sha1)
    }

    @Test func failedEncodingLeavesTheBufferUnchanged() {
        var buffer = ByteBuffer(bytes: [1, 2, 3])
        let message = STUNMessage(type: .bindingRequest, attributes: [.software("ok"), .errorCode(STUNErrorCode(code: 1, reason: ""))])
        #expect(throws: WireError(.malformedAttribute, "")) { try message.encode(into: &buffer) }
        #expect(Array(buffer.readableBytesView) == [1, 2, 3])
        let huge = STUNMessage(type: .bindingRequest, attributes: Array(repeating: .padding(length: 40000), count: 2))
        #expect(throws: WireError(.tooLarge, "")) { try huge.encode(into: &buffer) }
        #expect(Array(buffer.readableBytesView) == [1, 2, 3])
    }

    @Test func largeMessagesDecodeWithALargerMaximum() throws {
        // The largest body a 16-bit length that is a multiple of 4 allows: 65532 bytes.
        let message = STUNMessage(type: .bindingRequest, attributes: [.padding(length: 65528)])
        let bytes = try message.encoded()
        #expect(bytes.count == 20 + 65532)
        #expect(throws: WireError(.tooLarge, "")) {
            try STUNMessage(type: .bindingRequest, attributes: [.padding(length: 65529)]).encoded()
        }
        #expect(throws: WireError(.tooLarge, "")) { try STUNMessage.decode(datagram: bytes) }
        #expect(try STUNMessage.decode(datagram: bytes, maximumLength: 65535 + 20) == message)
    }

    // MARK: - Demultiplexing and accessors

    @Test func looksLikeSTUNChecksLeadingBitsAndCookie() throws {
        let bytes = try Self.sampleRequest()
        #expect(STUNMessage.looksLikeSTUN(bytes))
        #expect(STUNMessage.looksLikeSTUN(bytes[...]))
        #expect(!STUNMessage.looksLikeSTUN(bytes.prefix(19)))
        var rtp = bytes
        rtp[0] = 0x80  // RTP and RTCP start with 128-191 (RFC 7983)
        #expect(!STUNMessage.looksLikeSTUN(rtp))
        var wrongCookie = bytes
        wrongCookie[7] = 0
        #expect(!STUNMessage.looksLikeSTUN(wrongCookie))
        #expect(!STUNMessage.looksLikeSTUN([UInt8]()))
    }

    @Test func accessorsReturnTheFirstOccurrence() throws {
        let a = try IPEndpoint("192.0.2.1:1")
        let b = try IPEndpoint("192.0.2.2:2")
        let message = STUNMessage(type: .bindingErrorResponse, attributes: [
            .errorCode(.tryAlternate), .alternateServer(a), .alternateServer(b), .mappedAddress(b),
            .otherAddress(a), .responseOrigin(b), .realm("r"), .nonce("n"), .unknownAttributes([1, 2]),
            .changeRequest(changeIP: true, changePort: false), .responsePort(9),
        ])
        #expect(message.errorCode == .tryAlternate)
        #expect(message.alternateServer == a)
        #expect(message.mappedAddress == b)
        #expect(message.xorMappedAddress == nil)
        #expect(message.reflexiveAddress == b)
        #expect(message.otherAddress == a)
        #expect(message.responseOrigin == b)
        #expect(message.realm == "r")
        #expect(message.nonce == "n")
        #expect(message.unknownAttributes == [1, 2])
        #expect(message.changeRequest?.changeIP == true)
        #expect(message.changeRequest?.changePort == false)
        #expect(message.responsePort == 9)
        #expect(!message.hasFingerprint)
        #expect(!message.hasMessageIntegrity)
        #expect(STUNCredentials.shortTerm(password: "secret").description.contains("secret") == false)
    }
}
