import PunchCrypto

extension TransportError.Code {
    /// The Noise handshake broke down: a malformed handshake message or payload, a remote key that
    /// is not usable, or a step out of order. Close the connection; a retry needs a new one.
    public static let noiseHandshakeFailed = Self("noise.handshakeFailed")
    /// A Noise message failed authentication (bad tag): altered or truncated in transit, or the
    /// peer is not the one the keys were agreed with. The connection is closed.
    public static let noiseDecryptFailed = Self("noise.decryptFailed")
    /// The remote identity key's signature does not cover the Noise static key it used; the peer
    /// could not prove its identity (libp2p noise spec: "the connection MUST be terminated").
    public static let noiseInvalidSignature = Self("noise.invalidSignature")
    /// The remote identity key is not Ed25519 (or not a valid key); Punch accepts Ed25519 identities only.
    public static let noiseUnsupportedIdentityKey = Self("noise.unsupportedIdentityKey")
    /// The remote peer proved a different PeerID than the dialer expected: a stale address or an
    /// impostor. Check the multiaddr's `/p2p/` component.
    public static let noisePeerIDMismatch = Self("noise.peerIDMismatch")
    /// A frame's 2-byte length exceeds what the current phase allows (a handshake message larger
    /// than ``NoiseHandler/Configuration/maximumHandshakeMessageLength``): not a Noise peer.
    public static let noiseFrameTooLarge = Self("noise.frameTooLarge")
    /// The handshake did not finish within ``NoiseHandler/Configuration/handshakeTimeout``.
    public static let noiseHandshakeTimeout = Self("noise.handshakeTimeout")
    /// More plaintext was written before the handshake finished than
    /// ``NoiseHandler/Configuration/maximumBufferedPlaintextBeforeHandshake`` allows; wait for
    /// ``NoiseHandshakeCompleted`` before writing in bulk.
    public static let noiseBufferLimitExceeded = Self("noise.bufferLimitExceeded")
    /// A direction used all 2^64 - 1 nonces; the libp2p noise spec requires closing the connection.
    public static let noiseNonceExhausted = Self("noise.nonceExhausted")
}

extension TransportError {
    /// The transport error for a failure in the Noise state machines.
    init(noise error: any Error) {
        if let error = error as? TransportError {
            self = error
            return
        }
        guard let error = error as? PunchCryptoError else {
            self.init(.noiseHandshakeFailed, "Noise failed: \(error)")
            return
        }
        let code: Code
        switch error.code {
        case .noiseDecryptFailed: code = .noiseDecryptFailed
        case .invalidSignature: code = .noiseInvalidSignature
        case .unsupportedKeyType, .malformedKey: code = .noiseUnsupportedIdentityKey
        case .noisePeerIDMismatch: code = .noisePeerIDMismatch
        case .noiseNonceExhausted: code = .noiseNonceExhausted
        default: code = .noiseHandshakeFailed
        }
        self.init(code, error.message)
    }
}
