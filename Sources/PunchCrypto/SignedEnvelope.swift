import Foundation
import PunchWire

/// A signed envelope (libp2p RFC 0002): a payload, its type, the signer's public key and a
/// signature bound to a domain string.
///
/// Relay reservation vouchers and peer records travel as envelopes. The signature covers the
/// domain, so a signature made for one purpose is never valid for another.
///
/// ```swift
/// let envelope = try SignedEnvelope.seal(payload: voucher, payloadType: SignedEnvelope.PayloadType.relayVoucher,
///                                        domain: SignedEnvelope.Domain.relayVoucher, with: relayKey)
/// let opened = try SignedEnvelope.open(envelope.encoded, domain: SignedEnvelope.Domain.relayVoucher,
///                                      payloadType: SignedEnvelope.PayloadType.relayVoucher)
/// ```
public struct SignedEnvelope: Hashable, Sendable {
    /// The signer's public key.
    public let publicKey: PublicKey
    /// The payload's type: a multicodec code as a varint, optionally followed by more bytes.
    public let payloadType: [UInt8]
    /// The payload.
    public let payload: [UInt8]
    /// The signature over domain, payload type and payload.
    public let signature: [UInt8]

    /// Domain strings of the envelopes Punch uses.
    public enum Domain {
        /// Circuit Relay v2 reservation vouchers (relay/circuit-v2.md, "Reservation Vouchers").
        public static let relayVoucher = "libp2p-relay-rsvp"
        /// Peer records (RFC 0003).
        public static let peerRecord = "libp2p-peer-record"
    }

    /// Payload types of the envelopes Punch uses.
    ///
    /// RFC 0002 describes the type hint as a multicodec, but go-libp2p, rust-libp2p and py-libp2p
    /// all put the code's two bytes on the wire as they are (big-endian), not as a varint; these
    /// constants follow the wire.
    public enum PayloadType {
        /// `libp2p-relay-rsvp`, multicodec 0x0302.
        public static let relayVoucher: [UInt8] = [0x03, 0x02]
        /// `libp2p-peer-record`, multicodec 0x0301.
        public static let peerRecord: [UInt8] = [0x03, 0x01]
    }

    /// The largest encoded envelope accepted by ``open(_:domain:payloadType:)``.
    public static let maximumEncodedLength = 16 * 1024

    /// Signs `payload` and wraps it in an envelope.
    ///
    /// - Parameters:
    ///   - payload: the bytes to sign.
    ///   - payloadType: the multicodec type hint, e.g. ``PayloadType/relayVoucher``.
    ///   - domain: the domain separation string, e.g. ``Domain/relayVoucher``.
    ///   - key: the signer's identity key.
    /// - Returns: the envelope; its ``encoded`` bytes are what goes on the wire.
    /// - Throws: an error if signing fails.
    public static func seal(
        payload: [UInt8],
        payloadType: [UInt8],
        domain: String,
        with key: PrivateKey
    ) throws -> SignedEnvelope {
        let signature = try key.sign(signedBytes(domain: domain, payloadType: payloadType, payload: payload))
        return SignedEnvelope(publicKey: key.publicKey, payloadType: payloadType, payload: payload, signature: signature)
    }

    /// Decodes an envelope and verifies its signature for `domain` and its payload type.
    ///
    /// - Parameters:
    ///   - bytes: the encoded envelope.
    ///   - domain: the domain the signature must have been made for.
    ///   - payloadType: the payload type the caller expects.
    /// - Returns: the verified envelope.
    /// - Throws: ``PunchCryptoError`` `.malformedEnvelope` (does not decode, too large, or a
    ///   different payload type), `.invalidSignature`, or the key's decoding error.
    public static func open(_ bytes: some Collection<UInt8>, domain: String, payloadType: [UInt8]) throws -> SignedEnvelope {
        let message: PBEnvelope
        do {
            message = try ProtobufFraming.decode(PBEnvelope.self, from: bytes, maximumLength: maximumEncodedLength)
        } catch {
            throw PunchCryptoError(.malformedEnvelope, "not a signed envelope: \(error)")
        }
        guard message.hasPublicKey else {
            throw PunchCryptoError(.malformedEnvelope, "the signed envelope carries no public key")
        }
        let publicKey = try PublicKey(protobufEncoded: try ProtobufFraming.encode(message.publicKey))
        let envelope = SignedEnvelope(
            publicKey: publicKey,
            payloadType: Array(message.payloadType),
            payload: Array(message.payload),
            signature: Array(message.signature)
        )
        guard envelope.payloadType == payloadType else {
            throw PunchCryptoError(
                .malformedEnvelope,
                "the envelope's payload type \(envelope.payloadType) is not the expected \(payloadType)"
            )
        }
        let signed = signedBytes(domain: domain, payloadType: envelope.payloadType, payload: envelope.payload)
        guard publicKey.isValidSignature(envelope.signature, for: signed) else {
            throw PunchCryptoError(.invalidSignature, "the envelope's signature does not verify for domain '\(domain)'")
        }
        return envelope
    }

    /// The envelope's wire form (the `Envelope` protobuf).
    public var encoded: [UInt8] {
        var message = PBEnvelope()
        message.publicKey.type = .ed25519
        message.publicKey.data = Data(publicKey.rawRepresentation)
        message.payloadType = Data(payloadType)
        message.payload = Data(payload)
        message.signature = Data(signature)
        // Every field is set, so encoding cannot fail on a missing required field.
        return try! ProtobufFraming.encode(message)
    }

    /// The PeerID of the signer.
    public var signer: PeerID { publicKey.peerID }

    /// The bytes that are signed: varint-length-prefixed domain, payload type and payload
    /// (RFC 0002, "Signature Production / Verification").
    static func signedBytes(domain: String, payloadType: [UInt8], payload: [UInt8]) -> [UInt8] {
        let domainBytes = Array(domain.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(domainBytes.count + payloadType.count + payload.count + 3 * Varint.maximumLength)
        for part in [domainBytes, payloadType, payload] {
            Varint.encode(UInt64(part.count), into: &out)
            out += part
        }
        return out
    }
}
