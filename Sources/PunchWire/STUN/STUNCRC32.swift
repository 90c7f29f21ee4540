/// The CRC-32 of ISO 3309 / ITU-T V.42 (the one zlib and Ethernet use), which STUN's FINGERPRINT
/// is built on (RFC 8489 §14.7).
///
/// Reflected polynomial 0xEDB88320, initial value and final XOR 0xFFFFFFFF; table-driven, one
/// byte at a time, which is plenty for messages of at most a few kilobytes.
enum STUNCRC32 {
    private static let table: [UInt32] = (0..<256).map { index in
        var value = UInt32(index)
        for _ in 0..<8 {
            value = value & 1 == 1 ? (value >> 1) ^ 0xEDB8_8320 : value >> 1
        }
        return value
    }

    /// The CRC-32 of `bytes`; "123456789" gives 0xCBF43926.
    static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }
}
