import Crypto
import Foundation
import PunchWire

/// The libp2p Noise handshake (libp2p/specs noise/README.md) as a state machine: Noise XX with
/// each side's identity proven by a signed `NoiseHandshakePayload`.
///
/// Feed it handshake messages (without the 2-byte length prefix, which is the caller's framing)
/// and perform the ``Action`` each step returns. It does no I/O.
///
/// ```swift
/// var dialer = LibP2PNoiseHandshake(role: .initiator, identity: key, expectedRemotePeerID: peer)
/// var action = try dialer.start()                 // .send(message 1)
/// action = try dialer.receive(message2)           // .sendAndComplete(message 3, outcome)
/// ```
///
/// - Message 1 (initiator) has an empty payload: it is not encrypted ("The libp2p Handshake Payload").
/// - Message 2 carries the responder's payload, message 3 the initiator's.
/// - A payload holds the identity `PublicKey` protobuf and its signature over
///   `"noise-libp2p-static-key:" || static X25519 public key`; both are checked on receipt, and a
///   dialer's expected PeerID must match (spec, "SecureOutbound").
/// - With ``Configuration/muxers`` set, each payload also lists stream muxers
///   (`NoiseExtensions.stream_muxers`), and the result names the muxer both support.
public struct LibP2PNoiseHandshake: Sendable {
    /// Options that both roles share.
    public struct Configuration: Sendable, Hashable {
        /// Stream muxer protocol IDs to offer in the handshake, most preferred first (for example
        /// `["/yamux/1.0.0"]`). Empty (the default) sends no extensions at all, and the muxer is
        /// then negotiated after the handshake with multistream-select.
        public var muxers: [String]

        /// Creates a configuration.
        public init(muxers: [String] = []) {
            self.muxers = muxers
        }
    }

    /// What the caller must do after a step.
    public enum Action: Sendable {
        /// Nothing to send; pass the next handshake message to ``LibP2PNoiseHandshake/receive(_:)``.
        case wait
        /// Send this handshake message, then wait for the next one.
        case send([UInt8])
        /// Send this last handshake message; the handshake is complete (the initiator's last step).
        case sendAndComplete([UInt8], Outcome)
        /// The handshake is complete; nothing more to send (the responder's last step).
        case complete(Outcome)
    }

    /// The result of a completed handshake: who the remote peer is, and the keys to talk to it.
    public struct Outcome: Sendable {
        /// The authenticated remote PeerID.
        public let remotePeerID: PeerID
        /// The remote identity key.
        public let remotePublicKey: PublicKey
        /// The stream muxers the remote peer listed, most preferred first (empty if none).
        public let remoteMuxers: [String]
        /// The stream muxer both sides listed: the initiator's first choice that the responder
        /// also lists, or `nil` if either side listed none or they share none.
        public let negotiatedMuxer: String?
        /// The cipher states for transport messages.
        public var transport: NoiseTransportState
    }

    /// The prefix of the data an identity key signs to vouch for a Noise static key
    /// (libp2p noise spec, "The libp2p Handshake Payload").
    public static let staticKeySignaturePrefix = Array("noise-libp2p-static-key:".utf8)

    /// The largest payload accepted: a payload cannot exceed the Noise message carrying it.
    public static let maximumPayloadLength = NoiseHandshakeState.maximumMessageLength

    private enum State {
        case idle
        case awaitingMessage1
        case awaitingMessage2
        case awaitingMessage3
        case complete
        case failed
    }

    /// Which side this handshake plays.
    public let role: NoiseRole
    private let identity: PrivateKey
    private let expectedRemotePeerID: PeerID?
    private let configuration: Configuration
    private var noise: NoiseHandshakeState
    private var state: State = .idle

    /// Creates a handshake with a fresh static X25519 key, as the spec permits for every session
    /// ("Static Key Authentication").
    ///
    /// - Parameters:
    ///   - role: `.initiator` for the dialer, `.responder` for the listener.
    ///   - identity: this node's identity key; it signs the static key.
    ///   - expectedRemotePeerID: the PeerID the remote must prove. A dialer always knows it and
    ///     must pass it (spec, "SecureOutbound"); a listener usually passes `nil`.
    ///   - configuration: muxers to offer.
    public init(
        role: NoiseRole,
        identity: PrivateKey,
        expectedRemotePeerID: PeerID? = nil,
        configuration: Configuration = Configuration()
    ) {
        self.init(
            role: role, identity: identity, expectedRemotePeerID: expectedRemotePeerID,
            configuration: configuration, staticKey: Curve25519.KeyAgreement.PrivateKey())
    }

    /// Creates a handshake with a given static key (tests).
    init(
        role: NoiseRole,
        identity: PrivateKey,
        expectedRemotePeerID: PeerID?,
        configuration: Configuration,
        staticKey: Curve25519.KeyAgreement.PrivateKey
    ) {
        self.role = role
        self.identity = identity
        self.expectedRemotePeerID = expectedRemotePeerID
        self.configuration = configuration
        // libp2p uses an empty prologue (the spec defines none).
        self.noise = NoiseHandshakeState(role: role, prologue: [UInt8](), staticKey: staticKey)
    }

    /// Whether the handshake finished successfully.
    public var isComplete: Bool {
        if case .complete = state { return true }
        return false
    }

    /// Starts the handshake.
    ///
    /// - Returns: `.send(message 1)` for the initiator, `.wait` for the responder.
    /// - Throws: ``PunchCryptoError`` `.noiseInvalidState` if already started.
    public mutating func start() throws -> Action {
        guard case .idle = state else {
            throw PunchCryptoError(.noiseInvalidState, "the libp2p Noise handshake was already started")
        }
        switch role {
        case .initiator:
            // The first message has no secrecy, so it carries no payload (spec, "The libp2p Handshake Payload").
            let message = try failing { try $0.noise.writeMessage(payload: [UInt8]()) }
            state = .awaitingMessage2
            return .send(message)
        case .responder:
            state = .awaitingMessage1
            return .wait
        }
    }

    /// Processes one handshake message from the remote peer.
    ///
    /// - Parameter message: one Noise handshake message, without the length prefix.
    /// - Returns: what to send next, and the ``Outcome`` once complete.
    /// - Throws: ``PunchCryptoError``: `.noiseMalformedMessage`, `.noiseDecryptFailed`,
    ///   `.noiseMalformedPayload`, `.malformedKey`, `.unsupportedKeyType` (a non-Ed25519 identity),
    ///   `.invalidSignature`, `.noisePeerIDMismatch`, or `.noiseInvalidState` when no message is
    ///   expected. After any error the handshake is failed and every later call throws.
    public mutating func receive(_ message: some DataProtocol) throws -> Action {
        switch state {
        case .awaitingMessage1:
            // A payload in message 1 would be unauthenticated and is ignored; the spec forbids sending one.
            _ = try failing { try $0.noise.readMessage(message) }
            let reply = try failing { try $0.writeOwnPayloadMessage() }
            state = .awaitingMessage3
            return .send(reply)
        case .awaitingMessage2:
            let remote = try failing { try $0.readRemotePayloadMessage(message) }
            let reply = try failing { try $0.writeOwnPayloadMessage() }
            let outcome = try failing { try $0.complete(remote) }
            return .sendAndComplete(reply, outcome)
        case .awaitingMessage3:
            let remote = try failing { try $0.readRemotePayloadMessage(message) }
            let outcome = try failing { try $0.complete(remote) }
            return .complete(outcome)
        case .idle, .complete, .failed:
            throw PunchCryptoError(.noiseInvalidState, "no libp2p Noise handshake message is expected now")
        }
    }

    // MARK: - Steps

    /// The remote identity as proven by a payload.
    struct RemoteIdentity {
        var publicKey: PublicKey
        var peerID: PeerID
        var muxers: [String]
    }

    /// Runs `body`; on error moves to `.failed` so no later call can continue a broken handshake.
    private mutating func failing<T>(_ body: (inout Self) throws -> T) throws -> T {
        do {
            return try body(&self)
        } catch {
            state = .failed
            throw error
        }
    }

    private mutating func writeOwnPayloadMessage() throws -> [UInt8] {
        var payload = PBNoiseHandshakePayload()
        payload.identityKey = Data(identity.publicKey.protobufEncoded)
        payload.identitySig = Data(try identity.sign(Self.staticKeySignaturePrefix + noise.localStaticPublicKey))
        if !configuration.muxers.isEmpty {
            // Extensions only when there is something to say, so peers without early muxer
            // negotiation see exactly the payload they expect.
            var extensions = PBNoiseExtensions()
            extensions.streamMuxers = configuration.muxers
            payload.extensions = extensions
        }
        let encoded: [UInt8]
        do {
            encoded = try ProtobufFraming.encode(payload)
        } catch {
            throw PunchCryptoError(.noiseMalformedPayload, "the local NoiseHandshakePayload does not encode: \(error)")
        }
        return try noise.writeMessage(payload: encoded)
    }

    private mutating func readRemotePayloadMessage(_ message: some DataProtocol) throws -> RemoteIdentity {
        let plaintext = try noise.readMessage(message)
        guard let remoteStaticKey = noise.remoteStaticKey else {
            throw PunchCryptoError(.noiseInvalidState, "the remote Noise static key is unknown after its message")
        }
        return try Self.verify(
            payload: plaintext, remoteStaticKey: remoteStaticKey, expectedRemotePeerID: expectedRemotePeerID)
    }

    private mutating func complete(_ remote: RemoteIdentity) throws -> Outcome {
        let transport = try noise.split()
        let initiatorMuxers = role == .initiator ? configuration.muxers : remote.muxers
        let responderMuxers = role == .initiator ? remote.muxers : configuration.muxers
        state = .complete
        return Outcome(
            remotePeerID: remote.peerID,
            remotePublicKey: remote.publicKey,
            remoteMuxers: remote.muxers,
            negotiatedMuxer: Self.negotiateMuxer(initiator: initiatorMuxers, responder: responderMuxers),
            transport: transport)
    }

    /// Checks a received payload (spec, "The libp2p Handshake Payload"): decode the identity key,
    /// verify its signature over the static key the handshake delivered, derive the PeerID and
    /// compare it with the expected one.
    static func verify(
        payload bytes: [UInt8],
        remoteStaticKey: [UInt8],
        expectedRemotePeerID: PeerID?
    ) throws -> RemoteIdentity {
        let payload: PBNoiseHandshakePayload
        do {
            payload = try ProtobufFraming.decode(PBNoiseHandshakePayload.self, from: bytes, maximumLength: maximumPayloadLength)
        } catch {
            throw PunchCryptoError(.noiseMalformedPayload, "the remote NoiseHandshakePayload does not decode: \(error)")
        }
        guard !payload.identityKey.isEmpty, !payload.identitySig.isEmpty else {
            throw PunchCryptoError(.noiseMalformedPayload, "the remote NoiseHandshakePayload lacks its identity key or signature")
        }
        // Throws .unsupportedKeyType for RSA, Secp256k1 and ECDSA identities, .malformedKey for garbage.
        let publicKey = try PublicKey(protobufEncoded: payload.identityKey)
        guard publicKey.isValidSignature(payload.identitySig, for: staticKeySignaturePrefix + remoteStaticKey) else {
            throw PunchCryptoError(
                .invalidSignature, "the remote identity key's signature does not cover the Noise static key it used")
        }
        let peerID = PeerID(publicKey: publicKey)
        if let expectedRemotePeerID, !expectedRemotePeerID.matches(publicKey) {
            throw PunchCryptoError(
                .noisePeerIDMismatch, "expected to reach \(expectedRemotePeerID) but the remote peer is \(peerID)")
        }
        return RemoteIdentity(publicKey: publicKey, peerID: peerID, muxers: payload.extensions.streamMuxers)
    }

    /// The initiator's first muxer that the responder also lists, so both sides reach the same
    /// answer from the same two lists.
    static func negotiateMuxer(initiator: [String], responder: [String]) -> String? {
        initiator.first { responder.contains($0) }
    }
}
