/// An error from one of PunchWire's decoders or encoders.
///
/// Compare errors by ``code``: the ``message`` is for people and may change between releases.
/// New codes may be added in any release, so a `switch` over codes needs a `default` branch.
///
/// ```swift
/// do { _ = try Multiaddr("/ip4/1.2.3.4/tcp/x") }
/// catch let error as WireError where error.code == .malformedValue { print(error) }
/// ```
public struct WireError: PunchError {
    /// A stable identifier for the kind of failure.
    public struct Code: PunchErrorCode {
        /// The code's stable name, for logs and JSON.
        public let name: String
        public init(_ name: String) { self.name = name }

        // Varint (multiformats unsigned-varint).
        /// A varint longer than 9 bytes, or with a value above 2^63 - 1.
        public static let varintOverflow = Code("wire.varintOverflow")
        /// A varint with a redundant trailing zero group (the spec requires minimal encoding).
        public static let varintNotMinimal = Code("wire.varintNotMinimal")

        // Framing and lengths, shared by every decoder.
        /// Input ended inside a value whose length was already known (for whole-message decoders).
        public static let truncated = Code("wire.truncated")
        /// A declared length is larger than the configured or protocol maximum.
        public static let tooLarge = Code("wire.tooLarge")
        /// Bytes were left over after a value that must fill its input exactly.
        public static let trailingBytes = Code("wire.trailingBytes")

        // Multiaddr.
        /// A protocol code or name that Punch does not know.
        public static let unknownProtocol = Code("wire.unknownProtocol")
        /// A protocol value that does not parse (bad IP, port out of range, bad PeerID bytes, ...).
        public static let malformedValue = Code("wire.malformedValue")
        /// A multiaddr text form that is not `/name/value/...`.
        public static let malformedText = Code("wire.malformedText")

        // STUN.
        /// Not a STUN message (bad leading bits, magic cookie or length alignment).
        public static let notSTUN = Code("wire.notSTUN")
        /// A STUN attribute with a value that does not parse.
        public static let malformedAttribute = Code("wire.malformedAttribute")
        /// FINGERPRINT does not match the message.
        public static let badFingerprint = Code("wire.badFingerprint")
        /// MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 does not match the message.
        public static let badIntegrity = Code("wire.badIntegrity")

        // NAT-PMP (RFC 6886) and PCP (RFC 6887).
        /// A NAT-PMP or PCP message with a version this decoder does not speak (NAT-PMP is 0,
        /// PCP is 2). A PCP client that receives version 0 talks to a NAT-PMP-only gateway.
        public static let wrongVersion = Code("wire.wrongVersion")
        /// A NAT-PMP or PCP message with an opcode that is unknown or not allowed where it
        /// appeared (a request where a response belongs, for example).
        public static let unexpectedOpcode = Code("wire.unexpectedOpcode")

        // Protobuf messages.
        /// A protobuf message that does not decode, or lacks a required field.
        public static let malformedProtobuf = Code("wire.malformedProtobuf")
    }

    /// What kind of failure this is; stable across releases.
    public let code: Code
    /// What happened, in words, including what to do about it where that is not obvious.
    public let message: String

    /// Creates an error. Decoders in this module are the usual source.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public static func == (lhs: WireError, rhs: WireError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
