/// Base58 with the Bitcoin alphabet ("base58btc"), the text form of libp2p PeerIDs
/// (`Qm...`, `12D3KooW...`) and the multibase encoding with prefix `z`.
///
/// Base58 is a big-number conversion, so encoding and decoding take time quadratic in the
/// length. Decoding refuses text longer than ``maximumTextLength`` so that hostile input cannot
/// make that cost unbounded.
///
/// ```swift
/// Base58.encode([0, 0, 1])          // "112"
/// try Base58.decode("2NEpo7TZRRrLZSi2U") == Array("Hello World!".utf8)
/// ```
public enum Base58 {
    /// The Bitcoin alphabet: digits and letters without `0`, `O`, `I` and `l`.
    public static let alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

    /// The longest text ``decode(_:)`` accepts, in characters.
    ///
    /// 2048 characters decode to at most 2048 bytes (all leading `1`s) and otherwise to about
    /// 1500 bytes: far above any PeerID (a few dozen bytes) or multihash this library handles,
    /// and small enough that the quadratic conversion stays in the low milliseconds.
    public static let maximumTextLength = 2048

    private static let digits: [UInt8] = Array(alphabet.utf8)

    /// The value of each ASCII byte as a base58 digit, or 0xFF for a byte outside the alphabet.
    private static let values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (value, digit) in digits.enumerated() { table[Int(digit)] = UInt8(value) }
        return table
    }()

    /// The base58btc text of `bytes`; each leading zero byte becomes a leading `1`.
    public static func encode<B: Collection>(_ bytes: B) -> String where B.Element == UInt8 {
        let input = Array(bytes)
        let zeros = input.prefix { $0 == 0 }.count
        // log(256) / log(58) < 1.38, so this many digits always hold the number.
        let capacity = (input.count - zeros) * 138 / 100 + 1
        // Big-endian base-58 digits; only the last `used` entries are significant so far.
        var number = [UInt8](repeating: 0, count: capacity)
        var used = 0
        for byte in input[zeros...] {
            var carry = UInt32(byte)
            var index = capacity - 1
            var touched = 0
            while carry != 0 || touched < used {
                carry += 256 * UInt32(number[index])
                number[index] = UInt8(carry % 58)
                carry /= 58
                touched += 1
                index -= 1
            }
            used = touched
        }
        var text = [UInt8](repeating: digits[0], count: zeros)
        text.reserveCapacity(zeros + used)
        for digit in number[(capacity - used)...] { text.append(digits[Int(digit)]) }
        return String(decoding: text, as: UTF8.self)
    }

    /// The bytes that base58btc `text` encodes; each leading `1` becomes a leading zero byte.
    ///
    /// The empty string decodes to no bytes.
    /// - Throws: ``WireError`` `.malformedValue` for a character outside ``alphabet`` (including
    ///   whitespace and multibase prefixes), `.tooLarge` for text longer than ``maximumTextLength``.
    public static func decode(_ text: String) throws -> [UInt8] {
        let input = Array(text.utf8.prefix(maximumTextLength + 1))
        guard input.count <= maximumTextLength else {
            throw WireError(.tooLarge, "base58 text longer than \(maximumTextLength) characters")
        }
        let zeros = input.prefix { $0 == digits[0] }.count
        // log(58) / log(256) < 0.733, so this many bytes always hold the number.
        let capacity = (input.count - zeros) * 733 / 1000 + 1
        // Big-endian bytes; only the last `used` entries are significant so far.
        var number = [UInt8](repeating: 0, count: capacity)
        var used = 0
        for (offset, character) in input.enumerated().dropFirst(zeros) {
            let value = values[Int(character)]
            guard value != 0xFF else {
                throw WireError(
                    .malformedValue, "base58 text has a character outside the alphabet at offset \(offset)")
            }
            var carry = UInt32(value)
            var index = capacity - 1
            var touched = 0
            while carry != 0 || touched < used {
                carry += 58 * UInt32(number[index])
                number[index] = UInt8(truncatingIfNeeded: carry)
                carry >>= 8
                touched += 1
                index -= 1
            }
            used = touched
        }
        return [UInt8](repeating: 0, count: zeros) + number[(capacity - used)...]
    }
}
