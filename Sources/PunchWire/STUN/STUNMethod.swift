/// A STUN method: the 12-bit operation a message belongs to (RFC 8489 §5).
///
/// Only Binding is defined by STUN itself; TURN and other usages add more, which is why this is
/// an open struct rather than an enum.
public struct STUNMethod: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The largest method number: methods are 12 bits wide.
    public static let maximumRawValue: UInt16 = 0x0FFF

    /// The method number, 0x000-0xFFF.
    public let rawValue: UInt16

    /// Creates a method from its number.
    ///
    /// - Parameter rawValue: the method number.
    /// - Returns: `nil` if `rawValue` does not fit in 12 bits.
    public init?(rawValue: UInt16) {
        guard rawValue <= Self.maximumRawValue else { return nil }
        self.rawValue = rawValue
    }

    /// Binding (0x001), the one method STUN defines (RFC 8489 §18.2).
    public static let binding = STUNMethod(rawValue: 0x001)!

    /// "Binding" for Binding, the hex number otherwise.
    public var description: String {
        self == .binding ? "Binding" : "0x" + String(rawValue, radix: 16)
    }
}
