/// What the encoder needs to add message integrity: a key and which HMACs to append.
///
/// ```swift
/// let bytes = try request.encoded(integrity: .sha1(.shortTerm(password: icePassword)), fingerprint: true)
/// ```
public struct STUNIntegrity: Hashable, Sendable {
    /// The key.
    public var credentials: STUNCredentials
    /// Whether to append MESSAGE-INTEGRITY (HMAC-SHA1).
    public var includesSHA1: Bool
    /// Whether to append MESSAGE-INTEGRITY-SHA256 (full 32-byte HMAC-SHA256).
    public var includesSHA256: Bool

    /// Creates an integrity choice.
    ///
    /// - Parameters:
    ///   - credentials: the key.
    ///   - includesSHA1: append MESSAGE-INTEGRITY.
    ///   - includesSHA256: append MESSAGE-INTEGRITY-SHA256 (after MESSAGE-INTEGRITY when both).
    public init(credentials: STUNCredentials, includesSHA1: Bool, includesSHA256: Bool) {
        self.credentials = credentials
        self.includesSHA1 = includesSHA1
        self.includesSHA256 = includesSHA256
    }

    /// MESSAGE-INTEGRITY only: what RFC 5389 peers (and ICE) understand.
    ///
    /// - Parameter credentials: the key.
    /// - Returns: the integrity choice.
    public static func sha1(_ credentials: STUNCredentials) -> STUNIntegrity {
        STUNIntegrity(credentials: credentials, includesSHA1: true, includesSHA256: false)
    }

    /// MESSAGE-INTEGRITY-SHA256 only, for peers known to support RFC 8489.
    ///
    /// - Parameter credentials: the key.
    /// - Returns: the integrity choice.
    public static func sha256(_ credentials: STUNCredentials) -> STUNIntegrity {
        STUNIntegrity(credentials: credentials, includesSHA1: false, includesSHA256: true)
    }

    /// Both attributes, MESSAGE-INTEGRITY first (RFC 8489 §14.6), for when the peer's support is
    /// not known yet.
    ///
    /// - Parameter credentials: the key.
    /// - Returns: the integrity choice.
    public static func sha1AndSHA256(_ credentials: STUNCredentials) -> STUNIntegrity {
        STUNIntegrity(credentials: credentials, includesSHA1: true, includesSHA256: true)
    }
}
