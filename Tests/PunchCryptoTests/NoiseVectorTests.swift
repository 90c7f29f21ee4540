import Crypto
import Testing

@testable import PunchCrypto

/// The cacophony test vector for Noise_XX_25519_ChaChaPoly_SHA256: keys, payloads and
/// ciphertexts from vectors/cacophony.txt of the cacophony project
/// (haskell-cryptography/cacophony); the handshake hash from the copy of that file that carries
/// `handshake_hash` (mcginty/snow tests/vectors/cacophony.txt, commit aabed315). Messages 1-3
/// are the handshake, 4-6 transport messages alternating responder, initiator, responder.
@Suite struct NoiseVectorTests {
    static let prologue = hex("4a6f686e2047616c74")
    static let initiatorStatic = hex("e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1")
    static let initiatorEphemeral = hex("893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a")
    static let responderStatic = hex("4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893")
    static let responderEphemeral = hex("bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b")
    static let handshakeHash = hex("c8e5f64e846193be2a834104c2a009868d6c9f3bd3c186299888b488b2f1f58e")
    static let messages: [(payload: [UInt8], ciphertext: [UInt8])] = [
        (
            hex("4c756477696720766f6e204d69736573"),
            hex("ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79444c756477696720766f6e204d69736573")
        ),
        (
            hex("4d757272617920526f746862617264"),
            hex(
                "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884381cbad1f276e038c48378ffce2b65285e08d6b68aaa3629a5a8639392490e5b9bd5269c2f1e4f488ed8831161f19b7815528f8982ffe09be9b5c412f8a0db50f8814c7194e83f23dbd8d162c9326ad"
            )
        ),
        (
            hex("462e20412e20486179656b"),
            hex(
                "c7195ffacac1307ff99046f219750fc47693e23c3cb08b89c2af808b444850a80ae475b9df0f169ae80a89be0865b57f58c9fea0d4ec82a286427402f113e4b6ae769a1d95941d49b25030"
            )
        ),
        (hex("4361726c204d656e676572"), hex("96763ed773f8e47bb3712f0e29b3060ffc956ffc146cee53d5e1df")),
        (
            hex("4a65616e2d426170746973746520536179"),
            hex("3e40f15f6f3a46ae446b253bf8b1d9ffb6ed9b174d272328ff91a7e2e5c79c07f5")
        ),
        (
            hex("457567656e2042f6686d20766f6e2042617765726b"),
            hex("eb3f3515110702e047a6c9da4478b6ead94873c11c0f2d710ddb3f09fce024b3a58502ae3f")
        ),
    ]

    static func states() throws -> (NoiseHandshakeState, NoiseHandshakeState) {
        let initiator = NoiseHandshakeState(
            role: .initiator, prologue: prologue,
            staticKey: try .init(rawRepresentation: initiatorStatic),
            ephemeralKey: try .init(rawRepresentation: initiatorEphemeral))
        let responder = NoiseHandshakeState(
            role: .responder, prologue: prologue,
            staticKey: try .init(rawRepresentation: responderStatic),
            ephemeralKey: try .init(rawRepresentation: responderEphemeral))
        return (initiator, responder)
    }

    @Test func handshakeMessagesMatchTheVectorByteForByte() throws {
        var (initiator, responder) = try Self.states()

        #expect(try initiator.writeMessage(payload: Self.messages[0].payload) == Self.messages[0].ciphertext)
        #expect(try responder.readMessage(Self.messages[0].ciphertext) == Self.messages[0].payload)

        #expect(try responder.writeMessage(payload: Self.messages[1].payload) == Self.messages[1].ciphertext)
        #expect(try initiator.readMessage(Self.messages[1].ciphertext) == Self.messages[1].payload)

        #expect(try initiator.writeMessage(payload: Self.messages[2].payload) == Self.messages[2].ciphertext)
        #expect(try responder.readMessage(Self.messages[2].ciphertext) == Self.messages[2].payload)

        #expect(initiator.isComplete && responder.isComplete)
        #expect(initiator.handshakeHash == Self.handshakeHash)
        #expect(responder.handshakeHash == Self.handshakeHash)
        let initiatorStaticPublic = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Self.initiatorStatic).publicKey
        let responderStaticPublic = try Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Self.responderStatic).publicKey
        #expect(responder.remoteStaticKey == Array(initiatorStaticPublic.rawRepresentation))
        #expect(initiator.remoteStaticKey == Array(responderStaticPublic.rawRepresentation))
    }

    @Test func transportMessagesMatchTheVectorAfterSplit() throws {
        var (initiator, responder) = try Self.states()
        _ = try responder.readMessage(initiator.writeMessage(payload: Self.messages[0].payload))
        _ = try initiator.readMessage(responder.writeMessage(payload: Self.messages[1].payload))
        _ = try responder.readMessage(initiator.writeMessage(payload: Self.messages[2].payload))
        var initiatorTransport = try initiator.split()
        var responderTransport = try responder.split()
        #expect(initiatorTransport.handshakeHash == Self.handshakeHash)

        // Message 4: responder to initiator.
        #expect(try responderTransport.encrypt(Self.messages[3].payload) == Self.messages[3].ciphertext)
        #expect(try initiatorTransport.decrypt(Self.messages[3].ciphertext) == Self.messages[3].payload)
        // Message 5: initiator to responder.
        #expect(try initiatorTransport.encrypt(Self.messages[4].payload) == Self.messages[4].ciphertext)
        #expect(try responderTransport.decrypt(Self.messages[4].ciphertext) == Self.messages[4].payload)
        // Message 6: responder to initiator, through the pointer-based fast paths the handler uses.
        let payload = Self.messages[5].payload
        var sealed = [UInt8](repeating: 0, count: payload.count + NoiseCipherState.tagLength)
        try payload.withUnsafeBytes { plaintext in
            try sealed.withUnsafeMutableBytes { try responderTransport.sender.encrypt(plaintext, into: $0) }
        }
        #expect(sealed == Self.messages[5].ciphertext)
        // Opened in place: the output is the message's own memory.
        var inPlace = sealed
        try inPlace.withUnsafeMutableBytes { buffer in
            try initiatorTransport.receiver.decrypt(
                UnsafeRawBufferPointer(buffer), into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<payload.count]))
        }
        let opened = Array(inPlace.prefix(payload.count))
        #expect(opened == Self.messages[5].payload)
        #expect(initiatorTransport.sender.nonce == 1 && initiatorTransport.receiver.nonce == 2)
    }

    @Test func flippedBitFailsWithoutAdvancingTheNonce() throws {
        var (initiator, responder) = try Self.states()
        _ = try responder.readMessage(initiator.writeMessage(payload: Self.messages[0].payload))
        _ = try initiator.readMessage(responder.writeMessage(payload: Self.messages[1].payload))
        _ = try responder.readMessage(initiator.writeMessage(payload: Self.messages[2].payload))
        var initiatorTransport = try initiator.split()
        var tampered = Self.messages[3].ciphertext
        tampered[0] ^= 0x01
        #expect(throws: PunchCryptoError(.noiseDecryptFailed, "")) { try initiatorTransport.decrypt(tampered) }
        #expect(throws: PunchCryptoError(.noiseDecryptFailed, "")) { try initiatorTransport.decrypt([1, 2, 3]) }
        #expect(initiatorTransport.receiver.nonce == 0)
        #expect(try initiatorTransport.decrypt(Self.messages[3].ciphertext) == Self.messages[3].payload)
    }

    @Test func inPlaceDecryptRefusesShortAndTamperedMessages() throws {
        var (initiator, responder) = try Self.states()
        _ = try responder.readMessage(initiator.writeMessage(payload: Self.messages[0].payload))
        _ = try initiator.readMessage(responder.writeMessage(payload: Self.messages[1].payload))
        _ = try responder.readMessage(initiator.writeMessage(payload: Self.messages[2].payload))
        var receiver = try initiator.split().receiver
        func open(_ message: [UInt8]) throws -> [UInt8] {
            var output = [UInt8](repeating: 0, count: max(0, message.count - NoiseCipherState.tagLength))
            try message.withUnsafeBytes { input in
                try output.withUnsafeMutableBytes { try receiver.decrypt(input, into: $0) }
            }
            return output
        }
        #expect(throws: PunchCryptoError(.noiseDecryptFailed, "")) { try open([UInt8](repeating: 0, count: 15)) }
        var tampered = Self.messages[3].ciphertext
        tampered[tampered.count - 1] ^= 0x10
        #expect(throws: PunchCryptoError(.noiseDecryptFailed, "")) { try open(tampered) }
        #expect(receiver.nonce == 0)
        #expect(try open(Self.messages[3].ciphertext) == Self.messages[3].payload)
        #expect(receiver.nonce == 1)
    }

    @Test func tamperedHandshakeMessageFailsToDecrypt() throws {
        var (initiator, responder) = try Self.states()
        _ = try responder.readMessage(initiator.writeMessage(payload: Self.messages[0].payload))
        var message2 = try responder.writeMessage(payload: Self.messages[1].payload)
        message2[40] ^= 0x80  // inside the encrypted static key
        #expect(throws: PunchCryptoError(.noiseDecryptFailed, "")) { try initiator.readMessage(message2) }
    }

    @Test func outOfTurnAndTruncatedMessagesAreRefused() throws {
        var (initiator, responder) = try Self.states()
        #expect(throws: PunchCryptoError(.noiseInvalidState, "")) { try initiator.readMessage([UInt8](repeating: 0, count: 32)) }
        #expect(throws: PunchCryptoError(.noiseInvalidState, "")) { try responder.writeMessage() }
        #expect(throws: PunchCryptoError(.noiseInvalidState, "")) { try initiator.split() }
        #expect(throws: PunchCryptoError(.noiseMalformedMessage, "")) { try responder.readMessage([UInt8](repeating: 9, count: 31)) }

        var (freshInitiator, freshResponder) = try Self.states()
        _ = try freshResponder.readMessage(freshInitiator.writeMessage())
        let message2 = try freshResponder.writeMessage()
        // e (32) + encrypted s (48) + tag (16) = 96 bytes minimum.
        #expect(throws: PunchCryptoError(.noiseMalformedMessage, "")) { try freshInitiator.readMessage(message2.prefix(95)) }
    }

    @Test func oversizedPayloadIsRefused() throws {
        var (initiator, _) = try Self.states()
        let payload = [UInt8](repeating: 0, count: NoiseHandshakeState.maximumMessageLength - 31)
        #expect(throws: PunchCryptoError(.noiseMalformedMessage, "")) { try initiator.writeMessage(payload: payload) }
        #expect(try initiator.writeMessage(payload: payload.dropLast()).count == NoiseHandshakeState.maximumMessageLength)
    }

    @Test func exhaustedNonceIsRefused() throws {
        var cipher = NoiseCipherState(key: SymmetricKey(size: .bits256), nonce: UInt64.max - 1)
        _ = try cipher.encrypt(plaintext: [1], associatedData: [UInt8]())
        #expect(cipher.nonce == UInt64.max)
        #expect(throws: PunchCryptoError(.noiseNonceExhausted, "")) {
            try cipher.encrypt(plaintext: [1], associatedData: [UInt8]())
        }
        #expect(throws: PunchCryptoError(.noiseNonceExhausted, "")) {
            try cipher.decrypt(ciphertext: [UInt8](repeating: 0, count: 17), associatedData: [UInt8]())
        }
    }

    @Test func transportRefusesPlaintextBeyondOneMessage() throws {
        var (initiator, responder) = try Self.states()
        _ = try responder.readMessage(initiator.writeMessage())
        _ = try initiator.readMessage(responder.writeMessage())
        _ = try responder.readMessage(initiator.writeMessage())
        var transport = try initiator.split()
        let largest = [UInt8](repeating: 1, count: NoiseTransportState.maximumPlaintextLength)
        #expect(try transport.encrypt(largest).count == 65535)
        #expect(throws: PunchCryptoError(.noiseMalformedMessage, "")) { try transport.encrypt(largest + [1]) }
    }
}
