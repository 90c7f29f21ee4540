/// A STUN message (RFC 8489 §5): a type, a transaction ID and a list of attributes.
///
/// Build one, then encode it, optionally adding MESSAGE-INTEGRITY and FINGERPRINT:
///
/// ```swift
/// let request = STUNMessage(type: .bindingRequest)
/// let datagram = try request.encoded(fingerprint: true)
/// // ... send, receive `reply` ...
/// let response = try STUNMessage.decode(datagram: reply)
/// if response.transactionID == request.transactionID, let mapped = response.xorMappedAddress { ... }
/// ```
///
/// A decoded message lists its attributes in wire order, including MESSAGE-INTEGRITY,
/// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, so re-encoding it reproduces the message (up to the
/// content of alignment padding). A FINGERPRINT in a decoded message has been checked. Message
/// integrity needs a key the decoder does not have, so it is checked separately with
/// ``verifyIntegrity(key:)``; for that the decoded value keeps the bytes it was decoded from
/// (``receivedBytes``). Changing any property drops those bytes, because they no longer describe
/// the message.
///
/// Equality and hashing compare type, transaction ID and attributes only.
public struct STUNMessage: Hashable, Sendable {
    /// The fixed value in bytes 4-7 of every STUN message (RFC 8489 §5).
    public static let magicCookie: UInt32 = 0x2112_A442
    /// The size of the message header, in bytes.
    public static let headerLength = 20
    /// The default for the largest whole message (header included) a decoder accepts: 1472 bytes.
    ///
    /// That is the largest UDP payload in one 1500-byte Ethernet frame (1500 - 20 IPv4 - 8 UDP),
    /// and so the largest datagram that arrives unfragmented on ordinary paths. RFC 8489 §6.1 keeps
    /// senders well below it (548 bytes of IPv4 or 1232 of IPv6 payload when the path MTU is
    /// unknown); RFC 5780 PADDING probes pad up to the MTU. STUN over TCP allows up to 65535 + 20
    /// bytes: pass a larger `maximumLength` where such messages are expected.
    public static let defaultMaximumLength = 1472
    /// FINGERPRINT is the CRC-32 XOR this value ("STUN" in ASCII), RFC 8489 §14.7, so that it
    /// differs from a CRC another protocol might put at the same place.
    static let fingerprintXOR: UInt32 = 0x5354_554E

    /// The method and class.
    public var type: STUNMessageType {
        didSet { received = nil }
    }
    /// The transaction ID that pairs a response with its request.
    public var transactionID: STUNTransactionID {
        didSet { received = nil }
    }
    /// The attributes, in wire order.
    public var attributes: [STUNAttribute] {
        didSet { received = nil }
    }

    /// What the decoder saw, kept for integrity checks.
    struct Received: Sendable {
        /// The whole message as received.
        var bytes: [UInt8]
        /// Where the processed MESSAGE-INTEGRITY attribute starts, if any.
        var integrityOffset: Int?
        /// Where the processed MESSAGE-INTEGRITY-SHA256 attribute starts, if any.
        var integritySHA256Offset: Int?
    }

    var received: Received?

    /// Creates a message.
    ///
    /// - Parameters:
    ///   - type: the method and class, e.g. ``STUNMessageType/bindingRequest``.
    ///   - transactionID: for a request a fresh random ID (the default); for a response the
    ///     request's ID.
    ///   - attributes: the attributes in the order they go on the wire.
    public init(type: STUNMessageType, transactionID: STUNTransactionID = .random(), attributes: [STUNAttribute] = []) {
        self.type = type
        self.transactionID = transactionID
        self.attributes = attributes
    }

    /// The exact bytes this message was decoded from, or `nil` for a message that was built
    /// locally or changed after decoding.
    public var receivedBytes: [UInt8]? { received?.bytes }

    /// Whether two messages have the same type, transaction ID and attributes; how they were
    /// received does not matter.
    public static func == (lhs: STUNMessage, rhs: STUNMessage) -> Bool {
        lhs.type == rhs.type && lhs.transactionID == rhs.transactionID && lhs.attributes == rhs.attributes
    }

    /// Hashes type, transaction ID and attributes, consistently with `==`.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(type)
        hasher.combine(transactionID)
        hasher.combine(attributes)
    }

    // MARK: - Demultiplexing

    /// Whether `bytes` start like a STUN message: at least a header's worth of bytes, the two
    /// leading bits zero, and the magic cookie at offset 4.
    ///
    /// This is the cheap test for a UDP socket shared with other protocols (RFC 7983 §7: a first
    /// byte of 0-3 is STUN; the cookie makes a false positive unlikely). It does not validate the
    /// rest of the message: decode it for that.
    /// - Parameter bytes: a received datagram, or the start of a stream.
    /// - Returns: `true` if the bytes look like STUN.
    public static func looksLikeSTUN(_ bytes: some Collection<UInt8>) -> Bool {
        guard bytes.count >= headerLength else { return false }
        var iterator = bytes.makeIterator()
        var prefix: UInt64 = 0
        for _ in 0..<8 { prefix = prefix << 8 | UInt64(iterator.next()!) }
        return prefix >> 62 == 0 && UInt32(truncatingIfNeeded: prefix) == magicCookie
    }

    // MARK: - Attribute access

    /// The comprehension-required attribute types (0x0000-0x7FFF) in this message that this codec
    /// does not understand, without duplicates, in the order they first appear.
    ///
    /// A server must answer a request that has any with 420 Unknown Attribute listing them in
    /// UNKNOWN-ATTRIBUTES; a client must treat such a response as failed (RFC 8489 §6.3.1, §7.3).
    /// Attributes after MESSAGE-INTEGRITY are ignored when decoding, so they are not reported.
    public var unknownComprehensionRequiredAttributes: [UInt16] {
        var seen = Set<UInt16>()
        var result: [UInt16] = []
        for case .unknown(let type, _) in attributes where STUNAttributeType.isComprehensionRequired(type) {
            if seen.insert(type).inserted { result.append(type) }
        }
        return result
    }

    /// The first attribute for which `extract` returns a value (RFC 8489 §14: when an attribute
    /// appears more than once, only the first occurrence needs to be processed).
    private func first<Value>(_ extract: (STUNAttribute) -> Value?) -> Value? {
        for attribute in attributes {
            if let value = extract(attribute) { return value }
        }
        return nil
    }

    /// The XOR-MAPPED-ADDRESS endpoint: the client's address as the server saw it.
    public var xorMappedAddress: IPEndpoint? {
        first { if case .xorMappedAddress(let endpoint) = $0 { endpoint } else { nil } }
    }

    /// The MAPPED-ADDRESS endpoint (sent by RFC 3489 servers instead of XOR-MAPPED-ADDRESS).
    public var mappedAddress: IPEndpoint? {
        first { if case .mappedAddress(let endpoint) = $0 { endpoint } else { nil } }
    }

    /// XOR-MAPPED-ADDRESS if present, else MAPPED-ADDRESS: the address to use as the reflexive
    /// address (RFC 8489 §14.1 asks clients to prefer the XOR form).
    public var reflexiveAddress: IPEndpoint? {
        xorMappedAddress ?? mappedAddress
    }

    /// The OTHER-ADDRESS endpoint: the server's alternate IP and port (RFC 5780).
    public var otherAddress: IPEndpoint? {
        first { if case .otherAddress(let endpoint) = $0 { endpoint } else { nil } }
    }

    /// The RESPONSE-ORIGIN endpoint: where the server sent the response from (RFC 5780).
    public var responseOrigin: IPEndpoint? {
        first { if case .responseOrigin(let endpoint) = $0 { endpoint } else { nil } }
    }

    /// The ALTERNATE-SERVER endpoint, sent with 300 Try Alternate.
    public var alternateServer: IPEndpoint? {
        first { if case .alternateServer(let endpoint) = $0 { endpoint } else { nil } }
    }

    /// The ERROR-CODE value of an error response.
    public var errorCode: STUNErrorCode? {
        first { if case .errorCode(let error) = $0 { error } else { nil } }
    }

    /// The types listed in an UNKNOWN-ATTRIBUTES attribute (with 420 Unknown Attribute).
    public var unknownAttributes: [UInt16]? {
        first { if case .unknownAttributes(let types) = $0 { types } else { nil } }
    }

    /// The USERNAME value.
    public var username: String? {
        first { if case .username(let text) = $0 { text } else { nil } }
    }

    /// The REALM value.
    public var realm: String? {
        first { if case .realm(let text) = $0 { text } else { nil } }
    }

    /// The NONCE value.
    public var nonce: String? {
        first { if case .nonce(let text) = $0 { text } else { nil } }
    }

    /// The SOFTWARE value.
    public var software: String? {
        first { if case .software(let text) = $0 { text } else { nil } }
    }

    /// The CHANGE-REQUEST flags (RFC 5780).
    public var changeRequest: (changeIP: Bool, changePort: Bool)? {
        first { if case .changeRequest(let changeIP, let changePort) = $0 { (changeIP, changePort) } else { nil } }
    }

    /// The RESPONSE-PORT value (RFC 5780).
    public var responsePort: UInt16? {
        first { if case .responsePort(let port) = $0 { port } else { nil } }
    }

    /// Whether the message has a FINGERPRINT. In a decoded message it has been verified.
    public var hasFingerprint: Bool {
        attributes.contains { if case .fingerprint = $0 { true } else { false } }
    }

    /// Whether the message has MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256; check it with
    /// ``verifyIntegrity(key:)``.
    public var hasMessageIntegrity: Bool {
        attributes.contains {
            switch $0 {
            case .messageIntegrity, .messageIntegritySHA256: true
            default: false
            }
        }
    }
}
