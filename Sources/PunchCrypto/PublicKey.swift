import Crypto
import Foundation
import PunchWire

/// A libp2p public identity key.
///
/// Punch supports Ed25519 identity keys (the peer-ids spec makes Ed25519 and RSA mandatory; Punch
/// nodes always use Ed25519, and RSA, Secp256k1 and ECDSA keys are refused with
/// ``PunchCryptoError/Code/unsupportedKeyType``).
public struct PublicKey: Hashable, Sendable {
    /// The raw 32-byte Ed25519 public key.
    public let rawRepresentation: [UInt8]
    private let key: Curve25519.Signing.PublicKey

    /// Creates a key from the 32 raw Ed25519 public key bytes.
    ///
    /// - Throws: ``PunchCryptoError`` `.malformedKey` if the bytes are not a valid Ed25519 key.
    public init(ed25519RawRepresentation bytes: some Collection<UInt8>) throws {
        let raw = Array(bytes)
        guard raw.count == 32, let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else {
            throw PunchCryptoError(.malformedKey, "an Ed25519 public key has 32 bytes, got \(raw.count)")
        }
        self.rawRepresentation = raw
        self.key = key
    }

    /// Decodes the `PublicKey` protobuf of the peer-ids spec.
    ///
    /// - Throws: ``PunchCryptoError`` `.malformedKey` for bytes that are not a `PublicKey`,
    ///   `.unsupportedKeyType` for a key type other than Ed25519.
    public init(protobufEncoded bytes: some Collection<UInt8>) throws {
        let message: PBPublicKey
        do {
            message = try ProtobufFraming.decode(PBPublicKey.self, from: bytes, maximumLength: Self.maximumProtobufLength)
        } catch {
            throw PunchCryptoError(.malformedKey, "not a libp2p PublicKey protobuf: \(error)")
        }
        guard message.type == .ed25519 else {
            throw PunchCryptoError(.unsupportedKeyType, "key type \(message.type) is not supported; Punch uses Ed25519 identities")
        }
        try self.init(ed25519RawRepresentation: message.data)
    }

    /// The largest `PublicKey` protobuf accepted (an RSA-4096 key is about 550 bytes; an Ed25519 one 36).
    public static let maximumProtobufLength = 1024

    /// The canonical `PublicKey` protobuf: what identify, Noise and envelopes carry, and what the
    /// PeerID is derived from.
    public var protobufEncoded: [UInt8] {
        // Canonical encoding by hand: field 1 (varint) then field 2 (bytes), as the spec requires
        // "the canonical protobuf encoding" for PeerID derivation.
        [0x08, UInt8(PBKeyType.ed25519.rawValue), 0x12, UInt8(rawRepresentation.count)] + rawRepresentation
    }

    /// The PeerID of this key.
    public var peerID: PeerID { PeerID(publicKey: self) }

    /// Whether `signature` is a valid Ed25519 signature of `data` by this key.
    public func isValidSignature(_ signature: some Collection<UInt8>, for data: some Collection<UInt8>) -> Bool {
        key.isValidSignature(Data(signature), for: Data(data))
    }

    public static func == (lhs: PublicKey, rhs: PublicKey) -> Bool { lhs.rawRepresentation == rhs.rawRepresentation }
    public func hash(into hasher: inout Hasher) { hasher.combine(rawRepresentation) }
}
