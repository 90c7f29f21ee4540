/// The part of CIDv1 that PeerIDs need: the `libp2p-key` CID of a PeerID multihash in multibase
/// base32, the form recommended for PeerIDs in text by the libp2p peer-ids spec (`bafz...`).
///
/// ```swift
/// let text = CIDv1.encodeLibp2pKey(multihash: peer.bytes)   // "bafz..."
/// try CIDv1.decodeLibp2pKey(text) == peer.bytes              // true
/// ```
public enum CIDv1 {
    /// The multicodec code of `libp2p-key`: the CID content is a PeerID multihash.
    public static let libp2pKeyCodec: UInt64 = 0x72

    /// The CID version this type reads and writes.
    private static let version: UInt64 = 1

    /// `"b"` followed by base32 of varint(1), varint(``libp2pKeyCodec``) and `multihash`.
    ///
    /// `multihash` is written as given; use ``Multihash/bytes`` to get well-formed bytes.
    public static func encodeLibp2pKey(multihash: [UInt8]) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(2 + multihash.count)
        Varint.encode(version, into: &bytes)
        Varint.encode(libp2pKeyCodec, into: &bytes)
        bytes.append(contentsOf: multihash)
        return "b" + Base32.encode(bytes)
    }

    /// The multihash bytes of a CIDv1 `libp2p-key` in multibase base32 (prefix `b`).
    ///
    /// Other multibase prefixes, CID versions and codecs are refused, since a PeerID has only this
    /// CID form; the multihash must be one whole ``Multihash``.
    /// - Throws: ``WireError`` `.malformedValue` for another prefix, version or codec or bad
    ///   base32, and the errors of ``Multihash/init(bytes:)`` or ``Varint`` for the rest.
    public static func decodeLibp2pKey(_ text: String) throws -> [UInt8] {
        guard text.utf8.first == UInt8(ascii: "b") else {
            throw WireError(.malformedValue, "a libp2p-key CID must be multibase base32 (prefix 'b')")
        }
        let bytes = try Base32.decode(String(text.dropFirst()))
        guard let (version, versionLength) = try Varint.decode(prefixOf: bytes) else {
            throw WireError(.truncated, "CID ends inside its version")
        }
        guard version == Self.version else {
            throw WireError(.malformedValue, "CID version \(version) is not 1")
        }
        guard let (codec, codecLength) = try Varint.decode(prefixOf: bytes.dropFirst(versionLength)) else {
            throw WireError(.truncated, "CID ends inside its codec")
        }
        guard codec == libp2pKeyCodec else {
            throw WireError(.malformedValue, "CID codec 0x\(String(codec, radix: 16)) is not libp2p-key (0x72)")
        }
        let multihash = Array(bytes.dropFirst(versionLength + codecLength))
        _ = try Multihash(bytes: multihash)
        return multihash
    }
}
