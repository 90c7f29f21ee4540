import Foundation

/// The two cipher states a finished Noise handshake yields (Noise `Split()`, rev 34 section 5.2):
/// one encrypts what this side sends, the other decrypts what it receives.
///
/// ```swift
/// var transport = try handshake.split()
/// let message = try transport.encrypt(Array("hello".utf8))   // at most 65519 bytes in
/// let plaintext = try transport.decrypt(messageFromPeer)
/// ```
public struct NoiseTransportState: Sendable {
    /// The largest Noise message (Noise rev 34, section 3; libp2p noise spec, "Wire Format").
    public static let maximumMessageLength = 65535
    /// The largest plaintext one transport message carries: 65535 minus the 16-byte tag.
    public static let maximumPlaintextLength = maximumMessageLength - NoiseCipherState.tagLength

    /// Encrypts what this side sends.
    public var sender: NoiseCipherState
    /// Decrypts what this side receives.
    public var receiver: NoiseCipherState
    /// The final handshake hash `h`, identical on both sides; usable for channel binding.
    public let handshakeHash: [UInt8]

    /// Creates a transport state from split cipher states.
    init(sender: NoiseCipherState, receiver: NoiseCipherState, handshakeHash: [UInt8]) {
        self.sender = sender
        self.receiver = receiver
        self.handshakeHash = handshakeHash
    }

    /// Encrypts one transport message (empty associated data).
    ///
    /// - Returns: ciphertext followed by the 16-byte tag.
    /// - Throws: ``PunchCryptoError`` `.noiseMalformedMessage` for more than
    ///   ``maximumPlaintextLength`` bytes, `.noiseNonceExhausted`.
    public mutating func encrypt(_ plaintext: some DataProtocol) throws -> [UInt8] {
        guard plaintext.count <= Self.maximumPlaintextLength else {
            throw PunchCryptoError(
                .noiseMalformedMessage,
                "a Noise transport message carries at most \(Self.maximumPlaintextLength) bytes, got \(plaintext.count); split it")
        }
        return try sender.encrypt(plaintext: plaintext, associatedData: [UInt8]())
    }

    /// Decrypts one transport message (ciphertext followed by tag, empty associated data).
    ///
    /// - Throws: ``PunchCryptoError`` `.noiseMalformedMessage` for more than 65535 bytes,
    ///   `.noiseDecryptFailed`, `.noiseNonceExhausted`.
    public mutating func decrypt(_ message: some DataProtocol) throws -> [UInt8] {
        guard message.count <= Self.maximumMessageLength else {
            throw PunchCryptoError(
                .noiseMalformedMessage, "a Noise message has at most \(Self.maximumMessageLength) bytes, got \(message.count)")
        }
        return try receiver.decrypt(ciphertext: message, associatedData: [UInt8]())
    }
}
