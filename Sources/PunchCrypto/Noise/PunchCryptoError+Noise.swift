import PunchWire
extension PunchCryptoError.Code {
    /// A Noise message failed authentication: it was altered, truncated, or encrypted with another
    /// key. The session cannot continue; close the connection.
    public static let noiseDecryptFailed = Self("crypto.noiseDecryptFailed")
    /// A Noise handshake message has the wrong length for its place in the XX pattern, carries a
    /// public key that is not a usable X25519 key, or exceeds the 65535-byte Noise limit.
    public static let noiseMalformedMessage = Self("crypto.noiseMalformedMessage")
    /// A Noise operation was called out of turn: writing when a message must be read, reading
    /// after the handshake finished, splitting before it finished. This is a bug in the caller.
    public static let noiseInvalidState = Self("crypto.noiseInvalidState")
    /// A cipher state used its last nonce (2^64 - 1 is reserved, Noise rev 34 section 5.1); the
    /// libp2p Noise spec requires closing the connection.
    public static let noiseNonceExhausted = Self("crypto.noiseNonceExhausted")
    /// The libp2p `NoiseHandshakePayload` does not decode or lacks the identity key or signature.
    public static let noiseMalformedPayload = Self("crypto.noiseMalformedPayload")
    /// The remote peer authenticated as a different PeerID than the one the caller expected.
    public static let noisePeerIDMismatch = Self("crypto.noisePeerIDMismatch")
}
