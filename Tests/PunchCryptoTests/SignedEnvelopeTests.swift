import Testing

@testable import PunchCrypto
@testable import PunchWire

@Suite struct SignedEnvelopeTests {
    let key = PrivateKey.generate()
    let payload = Array("voucher bytes".utf8)

    @Test func sealedEnvelopeOpensWithTheSameDomainAndType() throws {
        let envelope = try SignedEnvelope.seal(
            payload: payload, payloadType: SignedEnvelope.PayloadType.relayVoucher,
            domain: SignedEnvelope.Domain.relayVoucher, with: key)
        let opened = try SignedEnvelope.open(
            envelope.encoded, domain: SignedEnvelope.Domain.relayVoucher,
            payloadType: SignedEnvelope.PayloadType.relayVoucher)
        #expect(opened == envelope)
        #expect(opened.payload == payload)
        #expect(opened.signer == key.peerID)
    }

    @Test func signatureIsOverLengthPrefixedDomainTypeAndPayload() throws {
        let envelope = try SignedEnvelope.seal(payload: [9, 9], payloadType: [0x02], domain: "d", with: key)
        let expected: [UInt8] = [1, UInt8(ascii: "d"), 1, 0x02, 2, 9, 9]
        #expect(SignedEnvelope.signedBytes(domain: "d", payloadType: [0x02], payload: [9, 9]) == expected)
        #expect(key.publicKey.isValidSignature(envelope.signature, for: expected))
    }

    @Test func anotherDomainDoesNotVerify() throws {
        let envelope = try SignedEnvelope.seal(
            payload: payload, payloadType: SignedEnvelope.PayloadType.relayVoucher,
            domain: SignedEnvelope.Domain.relayVoucher, with: key)
        #expect(throws: PunchCryptoError(.invalidSignature, "")) {
            try SignedEnvelope.open(envelope.encoded, domain: SignedEnvelope.Domain.peerRecord, payloadType: SignedEnvelope.PayloadType.relayVoucher)
        }
    }

    @Test func anotherPayloadTypeIsRefused() throws {
        let envelope = try SignedEnvelope.seal(
            payload: payload, payloadType: SignedEnvelope.PayloadType.peerRecord,
            domain: SignedEnvelope.Domain.relayVoucher, with: key)
        #expect(throws: PunchCryptoError(.malformedEnvelope, "")) {
            try SignedEnvelope.open(envelope.encoded, domain: SignedEnvelope.Domain.relayVoucher, payloadType: SignedEnvelope.PayloadType.relayVoucher)
        }
    }

    @Test func tamperedPayloadDoesNotVerify() throws {
        let envelope = try SignedEnvelope.seal(payload: payload, payloadType: [0x02], domain: "d", with: key)
        var bytes = envelope.encoded
        let index = try #require(bytes.lastIndex(of: UInt8(ascii: "v")))
        bytes[index] = UInt8(ascii: "w")
        #expect(throws: PunchCryptoError(.invalidSignature, "")) { try SignedEnvelope.open(bytes, domain: "d", payloadType: [0x02]) }
    }

    @Test func garbageAndOversizedInputAreMalformed() {
        #expect(throws: PunchCryptoError(.malformedEnvelope, "")) { try SignedEnvelope.open([0xFF, 0xFF], domain: "d", payloadType: []) }
        #expect(throws: PunchCryptoError(.malformedEnvelope, "")) { try SignedEnvelope.open([], domain: "d", payloadType: []) }
        let huge = [UInt8](repeating: 0, count: SignedEnvelope.maximumEncodedLength + 1)
        #expect(throws: PunchCryptoError(.malformedEnvelope, "")) { try SignedEnvelope.open(huge, domain: "d", payloadType: []) }
    }
}
