/// The 16-bit attribute type codes this codec knows, from the IANA STUN registry
/// (RFC 8489 §18.3 and RFC 5780 §9.1).
///
/// Types 0x0000-0x7FFF are comprehension-required: an agent that does not understand one must
/// refuse the message (a server answers a request with 420 Unknown Attribute). Types
/// 0x8000-0xFFFF are comprehension-optional and may be ignored (RFC 8489 §14).
public enum STUNAttributeType {
    /// MAPPED-ADDRESS (RFC 8489 §14.1).
    public static let mappedAddress: UInt16 = 0x0001
    /// CHANGE-REQUEST (RFC 5780 §7.2).
    public static let changeRequest: UInt16 = 0x0003
    /// USERNAME (RFC 8489 §14.3).
    public static let username: UInt16 = 0x0006
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5).
    public static let messageIntegrity: UInt16 = 0x0008
    /// ERROR-CODE (RFC 8489 §14.8).
    public static let errorCode: UInt16 = 0x0009
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    public static let unknownAttributes: UInt16 = 0x000A
    /// REALM (RFC 8489 §14.9).
    public static let realm: UInt16 = 0x0014
    /// NONCE (RFC 8489 §14.10).
    public static let nonce: UInt16 = 0x0015
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6).
    public static let messageIntegritySHA256: UInt16 = 0x001C
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    public static let xorMappedAddress: UInt16 = 0x0020
    /// PADDING (RFC 5780 §7.6).
    public static let padding: UInt16 = 0x0026
    /// RESPONSE-PORT (RFC 5780 §7.5).
    public static let responsePort: UInt16 = 0x0027
    /// SOFTWARE (RFC 8489 §14.14).
    public static let software: UInt16 = 0x8022
    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    public static let alternateServer: UInt16 = 0x8023
    /// FINGERPRINT (RFC 8489 §14.7).
    public static let fingerprint: UInt16 = 0x8028
    /// RESPONSE-ORIGIN (RFC 5780 §7.3).
    public static let responseOrigin: UInt16 = 0x802B
    /// OTHER-ADDRESS (RFC 5780 §7.4).
    public static let otherAddress: UInt16 = 0x802C

    /// Whether an agent must understand `type` to process the message (RFC 8489 §14).
    ///
    /// - Parameter type: an attribute type code.
    /// - Returns: `true` for 0x0000-0x7FFF.
    public static func isComprehensionRequired(_ type: UInt16) -> Bool {
        type < 0x8000
    }
}
