/// A multihash: a hash function code, the digest length and the digest, as one self-describing
/// value. A libp2p PeerID is the multihash of the peer's public key (the identity "hash" of small
/// keys such as Ed25519, sha2-256 of larger ones).
///
/// Every value round-trips: ``bytes`` always decode again with ``init(bytes:)``.
///
/// ```swift
/// let peer = try Multihash(bytes: Base58.decode("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"))
/// peer.code == Multihash.sha256Code   // true
/// ```
public struct Multihash: Hashable, Sendable, CustomStringConvertible {
    /// The multicodec code of the hash function, e.g. ``sha256Code``.
    public let code: UInt64
    /// The digest; for ``identityCode`` it is the hashed data itself.
    public let digest: [UInt8]

    /// The multicodec code of the identity "hash", whose digest is the input itself. libp2p uses it
    /// for public keys of at most 42 encoded bytes (an Ed25519 PeerID's digest is 36 bytes).
    public static let identityCode: UInt64 = 0x00
    /// The multicodec code of SHA2-256, whose digest is always 32 bytes.
    public static let sha256Code: UInt64 = 0x12

    /// The longest digest accepted, in bytes.
    ///
    /// Generous next to the digests in use (32 for SHA2-256, 64 for SHA2-512, at most 42 for a
    /// libp2p identity multihash), and it bounds what a decoder allocates for hostile input.
    public static let maximumDigestLength = 128

    /// Creates a multihash from its parts.
    ///
    /// - Precondition: `code` is at most ``Varint/maximumValue``, `digest` is at most
    ///   ``maximumDigestLength`` bytes, and a ``sha256Code`` digest is 32 bytes: the values that
    ///   ``init(bytes:)`` accepts, so that every multihash can be encoded and decoded again.
    public init(code: UInt64, digest: [UInt8]) {
        precondition(code <= Varint.maximumValue, "multihash code \(code) exceeds 2^63 - 1")
        precondition(digest.count <= Self.maximumDigestLength, "multihash digest longer than \(Self.maximumDigestLength) bytes")
        precondition(code != Self.sha256Code || digest.count == 32, "a sha2-256 digest is 32 bytes")
        self.code = code
        self.digest = digest
    }

    /// Decodes one whole multihash: code varint, length varint, digest, nothing after.
    ///
    /// - Throws: ``WireError`` `.truncated` if `bytes` ends early, `.tooLarge` for a declared
    ///   length above ``maximumDigestLength`` (checked before copying), `.trailingBytes` for bytes
    ///   after the digest, `.malformedValue` for a sha2-256 digest that is not 32 bytes, or a
    ///   varint error.
    public init(bytes: some Collection<UInt8>) throws {
        guard let (code, codeLength) = try Varint.decode(prefixOf: bytes) else {
            throw WireError(.truncated, "multihash ends inside its hash function code")
        }
        let afterCode = bytes.dropFirst(codeLength)
        guard let (length, lengthLength) = try Varint.decode(prefixOf: afterCode) else {
            throw WireError(.truncated, "multihash ends inside its digest length")
        }
        guard length <= UInt64(Self.maximumDigestLength) else {
            throw WireError(.tooLarge, "multihash digest of \(length) bytes exceeds the maximum of \(Self.maximumDigestLength)")
        }
        let digest = afterCode.dropFirst(lengthLength)
        // Counting the rest instead of copying it first keeps the copy bounded by the length check.
        let available = digest.count
        guard available >= Int(length) else {
            throw WireError(.truncated, "multihash digest declares \(length) bytes but \(available) follow")
        }
        guard available == Int(length) else {
            throw WireError(.trailingBytes, "\(available - Int(length)) bytes after the multihash digest")
        }
        guard code != Self.sha256Code || length == 32 else {
            throw WireError(.malformedValue, "a sha2-256 multihash digest is 32 bytes, not \(length)")
        }
        self.code = code
        self.digest = Array(digest)
    }

    /// The binary form: code varint, length varint, digest.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Varint.encodedLength(code) + Varint.encodedLength(UInt64(digest.count)) + digest.count)
        Varint.encode(code, into: &out)
        Varint.encode(UInt64(digest.count), into: &out)
        out.append(contentsOf: digest)
        return out
    }

    /// The base58btc text of ``bytes``: how libp2p writes a PeerID (`Qm...`, `12D3KooW...`).
    public var description: String { Base58.encode(bytes) }
}
