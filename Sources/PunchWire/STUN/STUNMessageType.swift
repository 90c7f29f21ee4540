/// The 14-bit STUN message type: a method and a class, with their bits interleaved (RFC 8489 §5).
///
/// On the wire the type field is `0 0 M11 M10 M9 M8 M7 C1 M6 M5 M4 C0 M3 M2 M1 M0`, so a Binding
/// request is 0x0001, a Binding indication 0x0011, a success response 0x0101 and an error
/// response 0x0111.
public struct STUNMessageType: Hashable, Sendable, CustomStringConvertible {
    /// What the message is about.
    public var method: STUNMethod
    /// The message's role in its transaction.
    public var messageClass: STUNMessageClass

    /// Creates a message type.
    ///
    /// - Parameters:
    ///   - method: what the message is about, e.g. ``STUNMethod/binding``.
    ///   - messageClass: request, indication, success response or error response.
    public init(method: STUNMethod, class messageClass: STUNMessageClass) {
        self.method = method
        self.messageClass = messageClass
    }

    /// Splits the 16-bit type field into method and class.
    ///
    /// - Parameter rawValue: the type field as read from the wire.
    /// - Returns: `nil` if either of the two most significant bits is set: those are always zero in
    ///   STUN and are how STUN is told apart from other protocols on the same port (RFC 8489 §5).
    public init?(rawValue: UInt16) {
        guard rawValue & 0xC000 == 0 else { return nil }
        let method = (rawValue & 0x000F) | ((rawValue >> 1) & 0x0070) | ((rawValue >> 2) & 0x0F80)
        let classBits = ((rawValue >> 4) & 0b01) | ((rawValue >> 7) & 0b10)
        self.method = STUNMethod(rawValue: method)!
        self.messageClass = STUNMessageClass(rawValue: UInt8(classBits))!
    }

    /// The 16-bit type field with method and class bits interleaved.
    public var rawValue: UInt16 {
        let m = method.rawValue
        let c = UInt16(messageClass.rawValue)
        return (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
    }

    /// A Binding request (0x0001).
    public static let bindingRequest = STUNMessageType(method: .binding, class: .request)
    /// A Binding indication (0x0011), e.g. a keep-alive.
    public static let bindingIndication = STUNMessageType(method: .binding, class: .indication)
    /// A Binding success response (0x0101).
    public static let bindingSuccessResponse = STUNMessageType(method: .binding, class: .successResponse)
    /// A Binding error response (0x0111).
    public static let bindingErrorResponse = STUNMessageType(method: .binding, class: .errorResponse)

    /// E.g. "Binding request".
    public var description: String { "\(method) \(messageClass)" }
}
