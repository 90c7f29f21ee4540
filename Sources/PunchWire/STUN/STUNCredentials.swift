import Crypto

/// The key for MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 (RFC 8489 §9).
///
/// Punch does not run the OpaqueString / SASLprep profiles on passwords: the UTF-8 bytes you pass
/// are used as given. Prepare internationalized strings yourself if a peer requires it.
///
/// ```swift
/// let ice = STUNCredentials.shortTerm(password: "VOkJxbRl1RmTxUk/WvJxBt")
/// let turn = STUNCredentials.longTerm(username: "user", realm: "example.org", password: "secret")
/// ```
public struct STUNCredentials: Hashable, Sendable, CustomStringConvertible {
    /// The HMAC key bytes.
    public let key: [UInt8]

    /// Uses `key` as the HMAC key directly.
    ///
    /// - Parameter key: the key bytes, e.g. a long-term key stored in hashed form.
    public init(key: [UInt8]) {
        self.key = key
    }

    /// Short-term credentials (RFC 8489 §9.1.1): the key is the password's UTF-8 bytes.
    ///
    /// - Parameter password: the password, e.g. an ICE password.
    /// - Returns: credentials with `key` = UTF-8 of `password`.
    public static func shortTerm(password: String) -> STUNCredentials {
        STUNCredentials(key: Array(password.utf8))
    }

    /// Long-term credentials with the default MD5 password algorithm (RFC 8489 §9.2.2): the key is
    /// MD5(username ":" realm ":" password).
    ///
    /// MD5 is what the RFC mandates here; it is a key derivation for compatibility, not a choice.
    /// - Parameters:
    ///   - username: the USERNAME value.
    ///   - realm: the REALM value the server sent.
    ///   - password: the password.
    /// - Returns: credentials with the 16-byte MD5 key.
    public static func longTerm(username: String, realm: String, password: String) -> STUNCredentials {
        let input = Array("\(username):\(realm):\(password)".utf8)
        return STUNCredentials(key: Array(Insecure.MD5.hash(data: input)))
    }

    /// Never shows the key, so credentials can appear in logs safely.
    public var description: String { "STUNCredentials(\(key.count)-byte key)" }
}
