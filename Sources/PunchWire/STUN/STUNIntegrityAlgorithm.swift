import Crypto

/// The HMAC used for a STUN message-integrity attribute.
public enum STUNIntegrityAlgorithm: Hashable, Sendable, CustomStringConvertible {
    /// HMAC-SHA1 in MESSAGE-INTEGRITY (RFC 8489 §14.5), 20 bytes.
    case sha1
    /// HMAC-SHA256 in MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6), 16-32 bytes.
    case sha256

    /// "MESSAGE-INTEGRITY" or "MESSAGE-INTEGRITY-SHA256".
    public var description: String {
        switch self {
        case .sha1: "MESSAGE-INTEGRITY"
        case .sha256: "MESSAGE-INTEGRITY-SHA256"
        }
    }

    /// The attribute type that carries this HMAC.
    var attributeType: UInt16 {
        switch self {
        case .sha1: STUNAttributeType.messageIntegrity
        case .sha256: STUNAttributeType.messageIntegritySHA256
        }
    }

    /// The full length of the HMAC, which is also the length Punch sends.
    var codeLength: Int {
        switch self {
        case .sha1: 20
        case .sha256: 32
        }
    }

    /// The HMAC of `bytes` under `key`.
    func authenticationCode(for bytes: [UInt8], key: [UInt8]) -> [UInt8] {
        let symmetricKey = SymmetricKey(data: key)
        switch self {
        case .sha1: return Array(HMAC<Insecure.SHA1>.authenticationCode(for: bytes, using: symmetricKey))
        case .sha256: return Array(HMAC<SHA256>.authenticationCode(for: bytes, using: symmetricKey))
        }
    }

    /// Compares in time independent of where the first difference is, so a forger learns nothing
    /// from how fast a wrong code is refused.
    static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        guard lhs.count == rhs.count else { return false }
        var difference: UInt8 = 0
        for index in lhs.indices { difference |= lhs[index] ^ rhs[index] }
        return difference == 0
    }
}
