/// RFC 4648 base32 in lowercase without padding: the multibase encoding with prefix `b`, which
/// CIDv1 text (and so the CID form of a PeerID, `bafz...`) uses.
///
/// ```swift
/// Base32.encode(Array("foobar".utf8))   // "mzxw6ytboi"
/// try Base32.decode("MZXW6YQ")          // Array("foob".utf8)
/// ```
public enum Base32 {
    /// The RFC 4648 alphabet in lowercase, as multibase `b` writes it.
    public static let alphabet = "abcdefghijklmnopqrstuvwxyz234567"

    private static let digits: [UInt8] = Array(alphabet.utf8)

    /// The value of each ASCII byte as a base32 digit (either case), or 0xFF outside the alphabet.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, digit) in digits.enumerated() {
            table[Int(digit)] = UInt8(value)
            // Letters also decode in uppercase (multibase `B` is the same digits in uppercase).
            if digit >= UInt8(ascii: "a") && digit <= UInt8(ascii: "z") { table[Int(digit - 32)] = UInt8(value) }
        }
        return table
    }()

    /// The lowercase, unpadded base32 text of `bytes`.
    public static func encode<B: Collection>(_ bytes: B) -> String where B.Element == UInt8 {
        var text: [UInt8] = []
        text.reserveCapacity((bytes.count * 8 + 4) / 5)
        var buffer: UInt32 = 0
        var bits = 0
        for byte in bytes {
            buffer = buffer << 8 | UInt32(byte)
            bits += 8
            while bits >= 5 {
                bits -= 5
                text.append(digits[Int(buffer >> UInt32(bits) & 0x1F)])
            }
            buffer &= (1 << UInt32(bits)) - 1
        }
        if bits > 0 { text.append(digits[Int(buffer << UInt32(5 - bits) & 0x1F)]) }
        return String(decoding: text, as: UTF8.self)
    }

    /// The bytes that unpadded base32 `text` encodes; letters may be upper or lower case.
    ///
    /// - Throws: ``WireError`` `.malformedValue` for a character outside the alphabet (padding
    ///   `=` included), a length no encoding produces (1, 3 or 6 characters past a multiple of 8),
    ///   or non-zero bits after the last whole byte (so that each byte string has one text form).
    public static func decode(_ text: String) throws -> [UInt8] {
        let input = text.utf8
        switch input.count % 8 {
        case 1, 3, 6:
            throw WireError(.malformedValue, "base32 text of \(input.count) characters is not a whole number of bytes")
        default:
            break
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(input.count * 5 / 8)
        var buffer: UInt32 = 0
        var bits = 0
        for (offset, character) in input.enumerated() {
            let value = values[Int(character)]
            guard value != 0xFF else {
                throw WireError(.malformedValue, "base32 text has a character outside the alphabet at offset \(offset)")
            }
            buffer = buffer << 5 | UInt32(value)
            bits += 5
            if bits >= 8 {
                bits -= 8
                bytes.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
                buffer &= (1 << UInt32(bits)) - 1
            }
        }
        guard buffer == 0 else {
            throw WireError(.malformedValue, "base32 text has non-zero bits after its last byte")
        }
        return bytes
    }
}
