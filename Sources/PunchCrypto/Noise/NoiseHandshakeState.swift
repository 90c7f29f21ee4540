import Crypto
import Foundation

/// A Noise `HandshakeState` for `Noise_XX_25519_ChaChaPoly_SHA256` (Noise Protocol Framework
/// rev 34, section 5.3), the only protocol libp2p Noise uses:
///
/// ```
/// XX:
///   -> e
///   <- e, ee, s, es
///   -> s, se
/// ```
///
/// A pure value: it performs no I/O. Call ``writeMessage(payload:)`` and ``readMessage(_:)`` in
/// turn (the initiator writes first), then ``split()`` once ``isComplete``.
///
/// ```swift
/// var initiator = NoiseHandshakeState(role: .initiator, staticKey: .init())
/// var responder = NoiseHandshakeState(role: .responder, staticKey: .init())
/// _ = try responder.readMessage(try initiator.writeMessage())
/// _ = try initiator.readMessage(try responder.writeMessage())
/// _ = try responder.readMessage(try initiator.writeMessage())
/// var transport = try initiator.split()
/// ```
public struct NoiseHandshakeState: Sendable {
    /// The Noise protocol name, hashed into the initial state (libp2p noise spec, "Noise Protocol Name").
    public static let protocolName = "Noise_XX_25519_ChaChaPoly_SHA256"
    /// The largest Noise message, handshake or transport (Noise rev 34, section 3).
    public static let maximumMessageLength = NoiseTransportState.maximumMessageLength
    /// Bytes of an X25519 public key (`DHLEN`).
    public static let publicKeyLength = 32
    /// The number of messages in the XX pattern.
    static let messageCount = 3

    /// Which side this state plays.
    public let role: NoiseRole
    private var symmetric: NoiseSymmetricState
    private let staticKey: Curve25519.KeyAgreement.PrivateKey
    private var ephemeralKey: Curve25519.KeyAgreement.PrivateKey?
    private var remoteEphemeralKey: Curve25519.KeyAgreement.PublicKey?
    private var remoteStaticPublicKey: Curve25519.KeyAgreement.PublicKey?
    /// Index of the next message in the pattern (0, 1, 2); 3 when the handshake is complete.
    private var messageIndex = 0

    /// Creates a handshake state.
    ///
    /// - Parameters:
    ///   - role: initiator or responder.
    ///   - prologue: data both sides must agree on, mixed into the handshake hash (section 6);
    ///     libp2p uses an empty prologue.
    ///   - staticKey: this side's static X25519 key. libp2p authenticates it with the identity
    ///     key, so a fresh key per session is fine (libp2p noise spec, "Static Key Authentication").
    public init(role: NoiseRole, prologue: some DataProtocol = [UInt8](), staticKey: Curve25519.KeyAgreement.PrivateKey) {
        self.init(role: role, prologue: prologue, staticKey: staticKey, ephemeralKey: nil)
    }

    /// Creates a handshake state with a fixed ephemeral key, for test vectors only: reusing an
    /// ephemeral key destroys the handshake's security.
    init(
        role: NoiseRole,
        prologue: some DataProtocol,
        staticKey: Curve25519.KeyAgreement.PrivateKey,
        ephemeralKey: Curve25519.KeyAgreement.PrivateKey?
    ) {
        self.role = role
        self.staticKey = staticKey
        self.ephemeralKey = ephemeralKey
        self.symmetric = NoiseSymmetricState(protocolName: Self.protocolName)
        // Section 5.3, Initialize(): MixHash(prologue); XX has no pre-messages.
        symmetric.mixHash(prologue)
    }

    /// Whether all three messages have been written or read; then call ``split()``.
    public var isComplete: Bool { messageIndex == Self.messageCount }

    /// Whether the next step is ``writeMessage(payload:)`` (otherwise ``readMessage(_:)``, or
    /// nothing if complete). The initiator writes messages 1 and 3, the responder message 2.
    public var isWriteTurn: Bool {
        guard !isComplete else { return false }
        return (messageIndex % 2 == 0) == (role == .initiator)
    }

    /// The current handshake hash `h`; after the last message, the value both sides share.
    public var handshakeHash: [UInt8] { symmetric.handshakeHash }

    /// This side's static X25519 public key, the bytes libp2p signs with the identity key.
    public var localStaticPublicKey: [UInt8] { Array(staticKey.publicKey.rawRepresentation) }

    /// The remote static X25519 public key, known after reading the message that carries it
    /// (message 2 for the initiator, 3 for the responder).
    public var remoteStaticKey: [UInt8]? { remoteStaticPublicKey.map { Array($0.rawRepresentation) } }

    /// Writes the next handshake message (Noise `WriteMessage`).
    ///
    /// - Parameter payload: the payload, encrypted from message 2 on. Message 1's payload is sent
    ///   in clear; libp2p sends none.
    /// - Returns: the message to send, at most 65535 bytes.
    /// - Throws: ``PunchCryptoError`` `.noiseInvalidState` when it is not this side's turn,
    ///   `.noiseMalformedMessage` when the message would exceed 65535 bytes.
    public mutating func writeMessage(payload: some DataProtocol = [UInt8]()) throws -> [UInt8] {
        guard isWriteTurn else {
            throw PunchCryptoError(.noiseInvalidState, "it is not this side's turn to write a Noise handshake message")
        }
        let overhead: Int
        switch messageIndex {
        case 0: overhead = Self.publicKeyLength
        case 1: overhead = 2 * Self.publicKeyLength + 2 * NoiseCipherState.tagLength
        default: overhead = Self.publicKeyLength + 2 * NoiseCipherState.tagLength
        }
        guard overhead + payload.count <= Self.maximumMessageLength else {
            throw PunchCryptoError(
                .noiseMalformedMessage,
                "a Noise handshake payload of \(payload.count) bytes does not fit in a 65535-byte message")
        }

        var message: [UInt8] = []
        message.reserveCapacity(overhead + payload.count)
        switch messageIndex {
        case 0:
            // -> e
            message += writeEphemeral()
        case 1:
            // <- e, ee, s, es
            message += writeEphemeral()
            try mixKey(ephemeralKey, remoteEphemeralKey)
            message += try symmetric.encryptAndHash(staticKey.publicKey.rawRepresentation)
            try mixKey(staticKey, remoteEphemeralKey)
        default:
            // -> s, se
            message += try symmetric.encryptAndHash(staticKey.publicKey.rawRepresentation)
            try mixKey(staticKey, remoteEphemeralKey)
        }
        message += try symmetric.encryptAndHash(payload)
        messageIndex += 1
        return message
    }

    /// Reads the next handshake message (Noise `ReadMessage`).
    ///
    /// - Parameter message: the message as received, without libp2p's length prefix.
    /// - Returns: the decrypted payload.
    /// - Throws: ``PunchCryptoError`` `.noiseInvalidState` when it is not this side's turn,
    ///   `.noiseMalformedMessage` for a message too short or too long or with an unusable public
    ///   key, `.noiseDecryptFailed` when the static key or payload does not authenticate. The
    ///   state must then be discarded.
    public mutating func readMessage(_ message: some DataProtocol) throws -> [UInt8] {
        guard !isComplete, !isWriteTurn else {
            throw PunchCryptoError(.noiseInvalidState, "it is not this side's turn to read a Noise handshake message")
        }
        guard message.count <= Self.maximumMessageLength else {
            throw PunchCryptoError(
                .noiseMalformedMessage, "a Noise message has at most 65535 bytes, got \(message.count)")
        }
        let bytes = Array(message)
        let encryptedKeyLength = Self.publicKeyLength + NoiseCipherState.tagLength
        let index = messageIndex
        var offset = 0

        func take(_ count: Int) throws -> ArraySlice<UInt8> {
            guard bytes.count - offset >= count else {
                throw PunchCryptoError(
                    .noiseMalformedMessage,
                    "Noise handshake message \(index + 1) of \(bytes.count) bytes is too short for the XX pattern")
            }
            defer { offset += count }
            return bytes[offset..<(offset + count)]
        }

        switch messageIndex {
        case 0:
            // -> e
            remoteEphemeralKey = try readPublicKey(take(Self.publicKeyLength))
            symmetric.mixHash(remoteEphemeralKey!.rawRepresentation)
        case 1:
            // <- e, ee, s, es
            remoteEphemeralKey = try readPublicKey(take(Self.publicKeyLength))
            symmetric.mixHash(remoteEphemeralKey!.rawRepresentation)
            try mixKey(ephemeralKey, remoteEphemeralKey)
            remoteStaticPublicKey = try readPublicKey(symmetric.decryptAndHash(take(encryptedKeyLength)))
            try mixKey(ephemeralKey, remoteStaticPublicKey)
        default:
            // -> s, se
            remoteStaticPublicKey = try readPublicKey(symmetric.decryptAndHash(take(encryptedKeyLength)))
            try mixKey(ephemeralKey, remoteStaticPublicKey)
        }
        let payloadCiphertext = try take(bytes.count - offset)
        if symmetric.cipher.hasKey, payloadCiphertext.count < NoiseCipherState.tagLength {
            throw PunchCryptoError(
                .noiseMalformedMessage,
                "Noise handshake message \(messageIndex + 1) of \(bytes.count) bytes has no room for the payload tag")
        }
        let payload = try symmetric.decryptAndHash(payloadCiphertext)
        messageIndex += 1
        return payload
    }

    /// The transport cipher states (Noise `Split()`), once ``isComplete``.
    ///
    /// The initiator sends with the first derived key and receives with the second; the
    /// responder the reverse (section 5.2).
    /// - Throws: ``PunchCryptoError`` `.noiseInvalidState` before the handshake is complete.
    public func split() throws -> NoiseTransportState {
        guard isComplete else {
            throw PunchCryptoError(.noiseInvalidState, "the Noise handshake is not complete; it cannot be split yet")
        }
        let (initiatorToResponder, responderToInitiator) = symmetric.split()
        switch role {
        case .initiator:
            return NoiseTransportState(
                sender: initiatorToResponder, receiver: responderToInitiator, handshakeHash: symmetric.handshakeHash)
        case .responder:
            return NoiseTransportState(
                sender: responderToInitiator, receiver: initiatorToResponder, handshakeHash: symmetric.handshakeHash)
        }
    }

    // MARK: - Tokens

    /// The `e` token when writing: generate (unless fixed for a test vector), send, and mix the
    /// ephemeral public key (no PSK, so no MixKey; section 5.3).
    private mutating func writeEphemeral() -> [UInt8] {
        let key = ephemeralKey ?? Curve25519.KeyAgreement.PrivateKey()
        ephemeralKey = key
        let publicKey = Array(key.publicKey.rawRepresentation)
        symmetric.mixHash(publicKey)
        return publicKey
    }

    /// `MixKey(DH(local, remote))`, the `ee`, `es` and `se` tokens.
    ///
    /// Which keys each token pairs depends on the role; callers pass the pair the pattern names
    /// for this side, so `es` is DH(e, rs) for the initiator and DH(s, re) for the responder.
    private mutating func mixKey(
        _ local: Curve25519.KeyAgreement.PrivateKey?,
        _ remote: Curve25519.KeyAgreement.PublicKey?
    ) throws {
        guard let local, let remote else {
            throw PunchCryptoError(.noiseInvalidState, "a Noise DH token ran before both keys were known")
        }
        let shared: SharedSecret
        do {
            shared = try local.sharedSecretFromKeyAgreement(with: remote)
        } catch {
            // X25519 with a low-order point yields all zeros, which BoringSSL refuses; Noise rev 34
            // section 12.1 allows rejecting such keys.
            throw PunchCryptoError(.noiseMalformedMessage, "the remote Noise public key is not a usable X25519 key")
        }
        symmetric.mixKey(shared)
    }

    private func readPublicKey(_ bytes: some ContiguousBytes) throws -> Curve25519.KeyAgreement.PublicKey {
        do {
            return try Curve25519.KeyAgreement.PublicKey(rawRepresentation: bytes)
        } catch {
            throw PunchCryptoError(.noiseMalformedMessage, "a Noise message carries a public key that is not 32 bytes")
        }
    }
}
