/// The class of a STUN message: what role it plays in a transaction (RFC 8489 §5).
///
/// The raw value is the two class bits C1 C0.
public enum STUNMessageClass: UInt8, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// A request, which expects a response (C1 C0 = 0b00).
    case request = 0b00
    /// An indication, which expects no response (C1 C0 = 0b01).
    case indication = 0b01
    /// A success response (C1 C0 = 0b10).
    case successResponse = 0b10
    /// An error response, which carries ERROR-CODE (C1 C0 = 0b11).
    case errorResponse = 0b11

    /// The class name: "request", "indication", "success response" or "error response".
    public var description: String {
        switch self {
        case .request: "request"
        case .indication: "indication"
        case .successResponse: "success response"
        case .errorResponse: "error response"
        }
    }
}
