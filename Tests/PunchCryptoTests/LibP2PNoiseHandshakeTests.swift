import Crypto
import Foundation
import Testing

@testable import PunchCrypto
@testable import PunchWire

@Suite struct LibP2PNoiseHandshakeTests {
    let dialerKey = PrivateKey.generate()
    let listenerKey = PrivateKey.generate()

    /// Runs a whole handshake between two state machines, returning each side's outcome.
    static func run(
        initiator: inout LibP2PNoiseHandshake,
        responder: inout LibP2PNoiseHandshake
    ) throws -> (initiator: LibP2PNoiseHandshake.Outcome, responder: LibP2PNoiseHandshake.Outcome) {
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        guard case .wait = try responder.start() else { throw Unexpected.action }
        guard case .send(let message2) = try responder.receive(message1) else { throw Unexpected.action }
        guard case .sendAndComplete(let message3, let initiatorOutcome) = try initiator.receive(message2) else {
            throw Unexpected.action
        }
        guard case .complete(let responderOutcome) = try responder.receive(message3) else { throw Unexpected.action }
        return (initiatorOutcome, responderOutcome)
    }

    enum Unexpected: Error { case action }

    /// Message 2 as an arbitrary responder would build it, with a payload of the test's choosing.
    static func responderMessage2(
        to message1: [UInt8],
        payload: (_ staticPublicKey: [UInt8]) throws -> PBNoiseHandshakePayload
    ) throws -> [UInt8] {
        var responder = NoiseHandshakeState(role: .responder, staticKey: .init())
        _ = try responder.readMessage(message1)
        return try responder.writeMessage(payload: ProtobufFraming.encode(payload(responder.localStaticPublicKey)))
    }

    @Test func bothSidesCompleteAndLearnEachOthersPeerID() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey, expectedRemotePeerID: listenerKey.peerID)
        var responder = LibP2PNoiseHandshake(role: .responder, identity: listenerKey)
        var (dialerSide, listenerSide) = try Self.run(initiator: &initiator, responder: &responder)

        #expect(dialerSide.remotePeerID == listenerKey.peerID)
        #expect(dialerSide.remotePublicKey == listenerKey.publicKey)
        #expect(listenerSide.remotePeerID == dialerKey.peerID)
        #expect(listenerSide.remotePublicKey == dialerKey.publicKey)
        #expect(initiator.isComplete && responder.isComplete)
        #expect(dialerSide.negotiatedMuxer == nil && listenerSide.negotiatedMuxer == nil)
        #expect(dialerSide.transport.handshakeHash == listenerSide.transport.handshakeHash)

        let ping = try dialerSide.transport.encrypt(Array("ping".utf8))
        #expect(try listenerSide.transport.decrypt(ping) == Array("ping".utf8))
        let pong = try listenerSide.transport.encrypt(Array("pong".utf8))
        #expect(try dialerSide.transport.decrypt(pong) == Array("pong".utf8))
    }

    @Test func firstMessageIsABareEphemeralKey() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        #expect(message1.count == 32)
    }

    @Test func listenerExpectingAnotherPeerIDRejectsTheDialer() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey, expectedRemotePeerID: listenerKey.peerID)
        var responder = LibP2PNoiseHandshake(
            role: .responder, identity: listenerKey, expectedRemotePeerID: PrivateKey.generate().peerID)
        #expect(throws: PunchCryptoError(.noisePeerIDMismatch, "")) { try Self.run(initiator: &initiator, responder: &responder) }
        #expect(!responder.isComplete)
    }

    @Test func dialerExpectingAnotherPeerIDRejectsTheListener() throws {
        let someoneElse = PrivateKey.generate().peerID
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey, expectedRemotePeerID: someoneElse)
        var responder = LibP2PNoiseHandshake(role: .responder, identity: listenerKey)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        _ = try responder.start()
        guard case .send(let message2) = try responder.receive(message1) else { throw Unexpected.action }
        #expect(throws: PunchCryptoError(.noisePeerIDMismatch, "")) { try initiator.receive(message2) }
        // A failed handshake stays failed.
        #expect(throws: PunchCryptoError(.noiseInvalidState, "")) { try initiator.receive(message2) }
    }

    @Test func signatureOverAnotherStaticKeyIsRejected() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey, expectedRemotePeerID: listenerKey.peerID)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        let listenerKey = self.listenerKey
        let message2 = try Self.responderMessage2(to: message1) { staticKey in
            var payload = PBNoiseHandshakePayload()
            payload.identityKey = Data(listenerKey.publicKey.protobufEncoded)
            var otherStaticKey = staticKey
            otherStaticKey[0] ^= 0xFF
            payload.identitySig = Data(try listenerKey.sign(LibP2PNoiseHandshake.staticKeySignaturePrefix + otherStaticKey))
            return payload
        }
        #expect(throws: PunchCryptoError(.invalidSignature, "")) { try initiator.receive(message2) }
    }

    @Test func signatureWithoutTheSpecPrefixIsRejected() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        let listenerKey = self.listenerKey
        let message2 = try Self.responderMessage2(to: message1) { staticKey in
            var payload = PBNoiseHandshakePayload()
            payload.identityKey = Data(listenerKey.publicKey.protobufEncoded)
            payload.identitySig = Data(try listenerKey.sign(staticKey))
            return payload
        }
        #expect(throws: PunchCryptoError(.invalidSignature, "")) { try initiator.receive(message2) }
    }

    @Test func validHandcraftedPayloadIsAccepted() throws {
        // The same construction as the rejection tests, signed correctly: proves they fail for the reason they name.
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey, expectedRemotePeerID: listenerKey.peerID)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        let listenerKey = self.listenerKey
        let message2 = try Self.responderMessage2(to: message1) { staticKey in
            var payload = PBNoiseHandshakePayload()
            payload.identityKey = Data(listenerKey.publicKey.protobufEncoded)
            payload.identitySig = Data(try listenerKey.sign(LibP2PNoiseHandshake.staticKeySignaturePrefix + staticKey))
            return payload
        }
        guard case .sendAndComplete(_, let outcome) = try initiator.receive(message2) else { throw Unexpected.action }
        #expect(outcome.remotePeerID == listenerKey.peerID)
    }

    @Test func nonEd25519IdentityKeyIsRejected() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        let message2 = try Self.responderMessage2(to: message1) { _ in
            var key = PBPublicKey()
            key.type = .secp256K1
            key.data = Data([0x02] + [UInt8](repeating: 0x11, count: 32))
            var payload = PBNoiseHandshakePayload()
            payload.identityKey = Data(try ProtobufFraming.encode(key))
            payload.identitySig = Data([UInt8](repeating: 0x22, count: 64))
            return payload
        }
        #expect(throws: PunchCryptoError(.unsupportedKeyType, "")) { try initiator.receive(message2) }
    }

    @Test func payloadWithoutIdentityIsMalformed() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        let message2 = try Self.responderMessage2(to: message1) { _ in PBNoiseHandshakePayload() }
        #expect(throws: PunchCryptoError(.noiseMalformedPayload, "")) { try initiator.receive(message2) }
    }

    @Test func garbagePayloadIsMalformed() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        var responder = NoiseHandshakeState(role: .responder, staticKey: .init())
        _ = try responder.readMessage(message1)
        let message2 = try responder.writeMessage(payload: [0xFF, 0xFF, 0xFF])
        #expect(throws: PunchCryptoError(.noiseMalformedPayload, "")) { try initiator.receive(message2) }
    }

    @Test func flippedCiphertextBitIsRejected() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey)
        var responder = LibP2PNoiseHandshake(role: .responder, identity: listenerKey)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        _ = try responder.start()
        guard case .send(var message2) = try responder.receive(message1) else { throw Unexpected.action }
        message2[message2.count - 1] ^= 0x01  // the payload's tag
        #expect(throws: PunchCryptoError(.noiseDecryptFailed, "")) { try initiator.receive(message2) }
    }

    @Test func flippedBitInMessage3IsRejectedByTheListener() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey)
        var responder = LibP2PNoiseHandshake(role: .responder, identity: listenerKey)
        guard case .send(let message1) = try initiator.start() else { throw Unexpected.action }
        _ = try responder.start()
        guard case .send(let message2) = try responder.receive(message1) else { throw Unexpected.action }
        guard case .sendAndComplete(var message3, _) = try initiator.receive(message2) else { throw Unexpected.action }
        message3[60] ^= 0x04
        #expect(throws: PunchCryptoError(.noiseDecryptFailed, "")) { try responder.receive(message3) }
    }

    @Test func messagesOutOfOrderAreRefused() throws {
        var initiator = LibP2PNoiseHandshake(role: .initiator, identity: dialerKey)
        #expect(throws: PunchCryptoError(.noiseInvalidState, "")) { try initiator.receive([UInt8](repeating: 0, count: 96)) }
        _ = try initiator.start()
        #expect(throws: PunchCryptoError(.noiseInvalidState, "")) { try initiator.start() }
    }

    @Test(arguments: [
        (["/mplex/6.7.0", "/yamux/1.0.0"], ["/yamux/1.0.0", "/mplex/6.7.0"], "/mplex/6.7.0"),
        (["/yamux/1.0.0"], ["/mplex/6.7.0", "/yamux/1.0.0"], "/yamux/1.0.0"),
        (["/mplex/6.7.0"], ["/yamux/1.0.0"], nil),
        (["/yamux/1.0.0"], [], nil),
        ([], ["/yamux/1.0.0"], nil),
    ] as [([String], [String], String?)])
    func muxerNegotiation(initiatorMuxers: [String], responderMuxers: [String], expected: String?) throws {
        var initiator = LibP2PNoiseHandshake(
            role: .initiator, identity: dialerKey, configuration: .init(muxers: initiatorMuxers))
        var responder = LibP2PNoiseHandshake(
            role: .responder, identity: listenerKey, configuration: .init(muxers: responderMuxers))
        let (dialerSide, listenerSide) = try Self.run(initiator: &initiator, responder: &responder)
        #expect(dialerSide.negotiatedMuxer == expected)
        #expect(listenerSide.negotiatedMuxer == expected)
        #expect(dialerSide.remoteMuxers == responderMuxers)
        #expect(listenerSide.remoteMuxers == initiatorMuxers)
    }

    @Test func noMuxersMeansNoExtensionsOnTheWire() throws {
        for muxers in [[], ["/yamux/1.0.0"]] {
            var initiator = NoiseHandshakeState(role: .initiator, staticKey: .init())
            var responder = LibP2PNoiseHandshake(role: .responder, identity: listenerKey, configuration: .init(muxers: muxers))
            _ = try responder.start()
            guard case .send(let message2) = try responder.receive(initiator.writeMessage()) else { throw Unexpected.action }
            let payload = try PBNoiseHandshakePayload(serializedBytes: initiator.readMessage(message2))
            #expect(payload.hasExtensions == !muxers.isEmpty)
            #expect(payload.extensions.streamMuxers == muxers)
            #expect(payload.identityKey == Data(listenerKey.publicKey.protobufEncoded))
        }
    }
}
