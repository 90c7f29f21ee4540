/// The 96-bit transaction ID that pairs a STUN response with its request (RFC 8489 §5).
///
/// A client picks a fresh, uniformly random ID for every transaction; RFC 8489 §6 asks for
/// cryptographic randomness so that off-path attackers cannot forge responses, which is why
/// ``random()`` draws from `SystemRandomNumberGenerator`.
///
/// ```swift
/// let id = STUNTransactionID.random()
/// print(id)   // 24 hex digits
/// ```
public struct STUNTransactionID: Hashable, Sendable, CustomStringConvertible {
    /// The number of bytes in a transaction ID.
    public static let byteCount = 12

    // Stored as two integers rather than an array so the ID costs no allocation.
    private var high: UInt32
    private var low: UInt64

    /// Creates a transaction ID from its 12 bytes, in wire order.
    ///
    /// - Parameter bytes: exactly ``byteCount`` bytes.
    /// - Throws: ``WireError`` `.malformedValue` for any other length.
    public init<Bytes: Collection>(bytes: Bytes) throws where Bytes.Element == UInt8 {
        guard bytes.count == Self.byteCount else {
            throw WireError(.malformedValue, "a STUN transaction ID has 12 bytes, not \(bytes.count)")
        }
        var high: UInt32 = 0
        var low: UInt64 = 0
        for (index, byte) in bytes.enumerated() {
            if index < 4 {
                high = high << 8 | UInt32(byte)
            } else {
                low = low << 8 | UInt64(byte)
            }
        }
        self.high = high
        self.low = low
    }

    private init(high: UInt32, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// A fresh random transaction ID from the system's cryptographically secure generator.
    ///
    /// - Returns: a new ID; collisions are negligible (96 random bits).
    public static func random() -> STUNTransactionID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }

    /// A random transaction ID drawn from `generator`.
    ///
    /// Use this with a seeded generator in tests; use ``random()`` on the network.
    /// - Parameter generator: the source of randomness.
    /// - Returns: a new ID.
    public static func random<Generator: RandomNumberGenerator>(using generator: inout Generator) -> STUNTransactionID {
        STUNTransactionID(high: generator.next(), low: generator.next())
    }

    /// The 12 bytes of the ID, in wire order.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.byteCount)
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: high >> UInt32(shift))) }
        for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
        return out
    }

    /// The ID as 24 lowercase hex digits.
    public var description: String {
        bytes.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 0x10 ? "0" + hex : hex
        }.joined()
    }
}
