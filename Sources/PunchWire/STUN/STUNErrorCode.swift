/// The value of an ERROR-CODE attribute: a numeric code and a reason phrase (RFC 8489 §14.8).
///
/// On the wire the code is split into a class (the hundreds digit, 3-6) and a number (0-99).
///
/// ```swift
/// let error = STUNErrorCode(code: 420, reason: "Unknown Attribute")
/// ```
public struct STUNErrorCode: Hashable, Sendable, CustomStringConvertible {
    /// The smallest code RFC 8489 §14.8 allows (class 3).
    public static let minimumCode = 300
    /// The largest code RFC 8489 §14.8 allows (class 6, number 99).
    public static let maximumCode = 699

    /// The numeric code, 300-699, e.g. 401.
    public var code: Int
    /// A human-readable explanation; RFC 8489 limits it to fewer than 128 characters.
    public var reason: String

    /// Creates an error code value.
    ///
    /// The code is checked when the attribute is encoded, not here, so that any value read from the
    /// wire can also be represented.
    /// - Parameters:
    ///   - code: the numeric code, 300-699.
    ///   - reason: the reason phrase, fewer than 128 characters.
    public init(code: Int, reason: String) {
        self.code = code
        self.reason = reason
    }

    /// 300 Try Alternate: use the server in ALTERNATE-SERVER instead.
    public static let tryAlternate = STUNErrorCode(code: 300, reason: "Try Alternate")
    /// 400 Bad Request: the request was malformed.
    public static let badRequest = STUNErrorCode(code: 400, reason: "Bad Request")
    /// 401 Unauthenticated: missing or wrong credentials.
    public static let unauthenticated = STUNErrorCode(code: 401, reason: "Unauthenticated")
    /// 420 Unknown Attribute: the request had comprehension-required attributes the server does
    /// not understand; they are listed in UNKNOWN-ATTRIBUTES.
    public static let unknownAttribute = STUNErrorCode(code: 420, reason: "Unknown Attribute")
    /// 438 Stale Nonce: retry with the NONCE in this response.
    public static let staleNonce = STUNErrorCode(code: 438, reason: "Stale Nonce")
    /// 500 Server Error: a temporary server failure.
    public static let serverError = STUNErrorCode(code: 500, reason: "Server Error")

    /// E.g. "420 Unknown Attribute".
    public var description: String { "\(code) \(reason)" }
}
