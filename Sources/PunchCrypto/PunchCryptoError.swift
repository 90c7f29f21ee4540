import PunchWire

/// An error from PunchCrypto: keys, PeerIDs, signed envelopes and identity key files.
///
/// Compare errors by ``code``; the ``message`` is for people. New codes may appear in any release.
public struct PunchCryptoError: PunchError {
    /// A stable identifier for the kind of failure.
    public struct Code: PunchErrorCode {
        /// The code's stable name, for logs and JSON.
        public let name: String
        /// Creates a code. Codes are defined as static members next to the code that throws them.
        public init(_ name: String) { self.name = name }

        /// A key protobuf with a key type Punch does not support (RSA, Secp256k1, ECDSA).
        public static let unsupportedKeyType = Code("crypto.unsupportedKeyType")
        /// Key bytes of the wrong length or inconsistent content.
        public static let malformedKey = Code("crypto.malformedKey")
        /// A PeerID whose bytes or text do not parse.
        public static let malformedPeerID = Code("crypto.malformedPeerID")
        /// A PeerID that does not embed its public key (a SHA-256 PeerID): the key must come from elsewhere.
        public static let publicKeyNotEmbedded = Code("crypto.publicKeyNotEmbedded")
        /// A signature that does not verify.
        public static let invalidSignature = Code("crypto.invalidSignature")
        /// A signed envelope that does not decode, or whose payload type differs from the expected one.
        public static let malformedEnvelope = Code("crypto.malformedEnvelope")
        /// The identity key file does not exist.
        public static let keyFileMissing = Code("crypto.keyFileMissing")
        /// The identity key file exists but cannot be read or written (permissions, a directory, ...).
        public static let keyFileUnreadable = Code("crypto.keyFileUnreadable")
        /// The identity key file does not hold a valid libp2p private key.
        public static let keyFileCorrupt = Code("crypto.keyFileCorrupt")
        /// The identity key file can be read by other users.
        public static let keyFileInsecure = Code("crypto.keyFileInsecure")
    }

    /// What kind of failure this is; stable across releases.
    public let code: Code
    /// What happened and what to do about it.
    public let message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func == (lhs: PunchCryptoError, rhs: PunchCryptoError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
