import Crypto
import PunchWire

/// A libp2p PeerID: the multihash of a node's public key (libp2p/specs peer-ids/peer-ids.md).
///
/// Keys whose `PublicKey` protobuf is at most 42 bytes (Ed25519: 36) are embedded whole with the
/// identity multihash, so the key can be read back from the PeerID; larger keys are hashed with
/// SHA-256. The text form is base58btc (`12D3KooW…` for Ed25519, `Qm…` for SHA-256); the CIDv1
/// form (`bafz…`, multibase base32, codec libp2p-key) is parsed too.
///
/// ```swift
/// let id = try PeerID("12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq")
/// let key = try id.extractPublicKey()
/// ```
public struct PeerID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The PeerID as a multihash.
    public let multihash: Multihash

    /// Largest `PublicKey` protobuf embedded with the identity multihash (peer-ids spec, step 3).
    public static let maximumInlineKeyLength = 42

    /// The PeerID of `publicKey`.
    public init(publicKey: PublicKey) {
        let encoded = publicKey.protobufEncoded
        if encoded.count <= Self.maximumInlineKeyLength {
            multihash = Multihash(code: Multihash.identityCode, digest: encoded)
        } else {
            multihash = Multihash(code: Multihash.sha256Code, digest: Array(SHA256.hash(data: encoded)))
        }
    }

    /// Creates a PeerID from its binary form (a multihash), as carried in multiaddrs and protobufs.
    ///
    /// - Throws: ``PunchCryptoError`` `.malformedPeerID` unless the bytes are an identity multihash
    ///   of at most 42 bytes or a SHA-256 multihash.
    public init(bytes: some Collection<UInt8>) throws {
        let multihash: Multihash
        do {
            multihash = try Multihash(bytes: bytes)
        } catch {
            throw PunchCryptoError(.malformedPeerID, "a PeerID is a multihash: \(error)")
        }
        try self.init(multihash: multihash)
    }

    /// Creates a PeerID from a multihash.
    ///
    /// - Throws: ``PunchCryptoError`` `.malformedPeerID` for a hash function other than identity or
    ///   SHA-256, or an identity digest longer than 42 bytes.
    public init(multihash: Multihash) throws {
        switch multihash.code {
        case Multihash.identityCode where multihash.digest.count <= Self.maximumInlineKeyLength:
            break
        case Multihash.sha256Code where multihash.digest.count == 32:
            break
        default:
            throw PunchCryptoError(
                .malformedPeerID,
                "a PeerID is an identity multihash of at most \(Self.maximumInlineKeyLength) bytes or a SHA-256 multihash"
            )
        }
        self.multihash = multihash
    }

    /// Parses the text form: base58btc (`Qm…`, `1…`, `12D3KooW…`) or a CIDv1 (`b…`, codec libp2p-key).
    ///
    /// Per the peer-ids spec, "String representation": text starting with `1` or `Qm` is a bare
    /// base58btc multihash; anything else is a multibase CID.
    /// - Throws: ``PunchCryptoError`` `.malformedPeerID`.
    public init(_ text: String) throws {
        let bytes: [UInt8]
        do {
            if text.hasPrefix("1") || text.hasPrefix("Qm") {
                bytes = try Base58.decode(text)
            } else {
                bytes = try CIDv1.decodeLibp2pKey(text)
            }
        } catch {
            throw PunchCryptoError(.malformedPeerID, "'\(text)' is not a PeerID (base58btc or CIDv1 libp2p-key): \(error)")
        }
        try self.init(bytes: bytes)
    }

    /// The binary form (the multihash bytes).
    public var bytes: [UInt8] { multihash.bytes }

    /// The canonical text form, base58btc.
    public var description: String { Base58.encode(bytes) }

    /// The CIDv1 text form: multibase base32, codec libp2p-key (`bafz…`).
    public var cidString: String { CIDv1.encodeLibp2pKey(multihash: bytes) }

    /// The public key embedded in an identity-multihash PeerID.
    ///
    /// - Throws: ``PunchCryptoError`` `.publicKeyNotEmbedded` for a SHA-256 PeerID, or the key's
    ///   decoding error.
    public func extractPublicKey() throws -> PublicKey {
        guard multihash.code == Multihash.identityCode else {
            throw PunchCryptoError(.publicKeyNotEmbedded, "PeerID \(self) is a SHA-256 hash; its public key must be obtained from the peer")
        }
        return try PublicKey(protobufEncoded: multihash.digest)
    }

    /// Whether `publicKey` is the key this PeerID names.
    public func matches(_ publicKey: PublicKey) -> Bool {
        PeerID(publicKey: publicKey) == self
    }

    /// Byte order of the binary form; gives PeerIDs a stable order (used e.g. to break ties).
    public static func < (lhs: PeerID, rhs: PeerID) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}
