import Crypto
import Foundation
import PunchWire

/// A libp2p private identity key (Ed25519): signs, and names a node by its ``PeerID``.
///
/// ```swift
/// let key = PrivateKey.generate()
/// print(key.peerID)            // 12D3KooW...
/// let signature = try key.sign(Array("hello".utf8))
/// ```
public struct PrivateKey: Sendable {
    private let key: Curve25519.Signing.PrivateKey
    /// The matching public key.
    public let publicKey: PublicKey

    private init(key: Curve25519.Signing.PrivateKey) {
        self.key = key
        // A key's own public half is always a valid Ed25519 public key.
        self.publicKey = try! PublicKey(ed25519RawRepresentation: key.publicKey.rawRepresentation)
    }

    /// A new random Ed25519 identity key.
    public static func generate() -> PrivateKey {
        PrivateKey(key: Curve25519.Signing.PrivateKey())
    }

    /// Creates a key from its 32-byte Ed25519 seed.
    ///
    /// - Throws: ``PunchCryptoError`` `.malformedKey` for any other length.
    public init(ed25519Seed seed: some Collection<UInt8>) throws {
        guard seed.count == 32, let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: Array(seed)) else {
            throw PunchCryptoError(.malformedKey, "an Ed25519 private key seed has 32 bytes, got \(seed.count)")
        }
        self.init(key: key)
    }

    /// Decodes the `PrivateKey` protobuf of the peer-ids spec.
    ///
    /// The Ed25519 `Data` field is the 32-byte seed followed by the 32-byte public key (64 bytes),
    /// or, from older libp2p versions, the public key twice (96 bytes); both copies of the public
    /// key must match the seed (peer-ids spec, "Ed25519").
    /// - Throws: ``PunchCryptoError`` `.malformedKey` or `.unsupportedKeyType`.
    public init(protobufEncoded bytes: some Collection<UInt8>) throws {
        let message: PBPrivateKey
        do {
            message = try ProtobufFraming.decode(PBPrivateKey.self, from: bytes, maximumLength: 4096)
        } catch {
            throw PunchCryptoError(.malformedKey, "not a libp2p PrivateKey protobuf: \(error)")
        }
        guard message.type == .ed25519 else {
            throw PunchCryptoError(.unsupportedKeyType, "key type \(message.type) is not supported; Punch uses Ed25519 identities")
        }
        let data = Array(message.data)
        guard data.count == 64 || data.count == 96 else {
            throw PunchCryptoError(.malformedKey, "an Ed25519 PrivateKey holds 64 (or legacy 96) bytes, got \(data.count)")
        }
        try self.init(ed25519Seed: data[0..<32])
        let derived = publicKey.rawRepresentation
        guard Array(data[32..<64]) == derived, data.count == 64 || Array(data[64..<96]) == derived else {
            throw PunchCryptoError(.malformedKey, "the public key stored with the Ed25519 seed does not match it")
        }
    }

    /// The 32-byte Ed25519 seed. Keep it secret.
    public var ed25519Seed: [UInt8] { Array(key.rawRepresentation) }

    /// The `PrivateKey` protobuf (64-byte Ed25519 form), as libp2p implementations store keys.
    public var protobufEncoded: [UInt8] {
        let data = ed25519Seed + publicKey.rawRepresentation
        return [0x08, UInt8(PBKeyType.ed25519.rawValue), 0x12, UInt8(data.count)] + data
    }

    /// The PeerID of this key.
    public var peerID: PeerID { publicKey.peerID }

    /// An Ed25519 signature (RFC 8032) of `data`.
    ///
    /// - Throws: an error only if the platform's signing fails, which does not happen with valid keys.
    public func sign(_ data: some Collection<UInt8>) throws -> [UInt8] {
        Array(try key.signature(for: Data(data)))
    }
}
