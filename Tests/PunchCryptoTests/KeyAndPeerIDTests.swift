import Testing

@testable import PunchCrypto
@testable import PunchWire

func hex(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

@Suite struct KeyAndPeerIDTests {
    // libp2p/specs peer-ids/peer-ids.md, "Test vectors", Ed25519.
    static let specPrivateKey = hex(
        "080112407e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
    )
    static let specPublicKey = hex("080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e")

    @Test func specEd25519VectorRoundTrips() throws {
        let key = try PrivateKey(protobufEncoded: Self.specPrivateKey)
        #expect(key.publicKey.protobufEncoded == Self.specPublicKey)
        #expect(key.protobufEncoded == Self.specPrivateKey)
        #expect(try PublicKey(protobufEncoded: Self.specPublicKey) == key.publicKey)
    }

    @Test func ed25519PeerIDIsIdentityMultihashOfThePublicKeyProtobuf() throws {
        let key = try PrivateKey(protobufEncoded: Self.specPrivateKey)
        let id = key.peerID
        #expect(id.multihash.code == Multihash.identityCode)
        #expect(id.bytes == [0x00, 36] + Self.specPublicKey)
        #expect(id.description == "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq")
        // CIDv1 text as py-cid computes it for the same PeerID (checked by hand with py-libp2p 0.8.1).
        #expect(id.cidString == "bafzaajaiaejcahwr5d5ofrfbis4l5d6uwr57hu5tjodrypfm6yaq6dsc2r2pzyt6")
        #expect(try id.extractPublicKey() == key.publicKey)
        #expect(id.matches(key.publicKey))
        #expect(!id.matches(PrivateKey.generate().publicKey))
    }

    @Test func legacy96ByteEd25519PrivateKeyIsAccepted() throws {
        let key = try PrivateKey(protobufEncoded: Self.specPrivateKey)
        let legacy: [UInt8] = [0x08, 0x01, 0x12, 96] + key.ed25519Seed + key.publicKey.rawRepresentation + key.publicKey.rawRepresentation
        #expect(try PrivateKey(protobufEncoded: legacy).peerID == key.peerID)
        var mismatched = legacy
        mismatched[mismatched.count - 1] ^= 0x01
        #expect(throws: PunchCryptoError(.malformedKey, "")) { try PrivateKey(protobufEncoded: mismatched) }
    }

    @Test func privateKeyWithWrongPublicHalfIsRefused() throws {
        var bytes = Self.specPrivateKey
        bytes[bytes.count - 1] ^= 0x01
        #expect(throws: PunchCryptoError(.malformedKey, "")) { try PrivateKey(protobufEncoded: bytes) }
    }

    @Test func otherKeyTypesAreUnsupported() {
        // Secp256k1 public key from the peer-ids spec test vectors.
        let secp = hex("08021221037777e994e452c21604f91de093ce415f5432f701dd8cd1a7a6fea0e630bfca99")
        #expect(throws: PunchCryptoError(.unsupportedKeyType, "")) { try PublicKey(protobufEncoded: secp) }
        #expect(throws: PunchCryptoError(.malformedKey, "")) { try PublicKey(protobufEncoded: [0x08, 0x01, 0x12, 0x03, 1, 2, 3]) }
        #expect(throws: PunchCryptoError(.malformedKey, "")) { try PublicKey(protobufEncoded: [0xFF]) }
    }

    @Test func specTextFormsParseAndRoundTrip() throws {
        let ed = try PeerID("12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
        #expect(ed.description == "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA")
        #expect(try PeerID(ed.cidString) == ed)
        #expect(ed.cidString.hasPrefix("bafz"))
        _ = try ed.extractPublicKey()

        let sha = try PeerID("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
        #expect(sha.multihash.code == Multihash.sha256Code)
        #expect(sha.description == "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
        #expect(throws: PunchCryptoError(.publicKeyNotEmbedded, "")) { try sha.extractPublicKey() }

        let cid = try PeerID("bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe")
        #expect(cid.cidString == "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe")
        #expect(cid.multihash.code == Multihash.sha256Code)
        #expect(try PeerID(cid.description) == cid)
    }

    @Test func garbageTextIsMalformedPeerID() {
        for text in ["", "Qm", "12D3KooW0OIl", "bafz!!", "zQ3sh", "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5"] {
            #expect(throws: PunchCryptoError(.malformedPeerID, ""), "\(text)") { try PeerID(text) }
        }
        // A multihash with a hash function PeerIDs never use (sha2-512, 0x13).
        #expect(throws: PunchCryptoError(.malformedPeerID, "")) {
            try PeerID(bytes: [0x13, 0x40] + [UInt8](repeating: 1, count: 64))
        }
    }

    @Test func signaturesVerifyOnlyForTheirDataAndKey() throws {
        let key = PrivateKey.generate()
        let data = Array("noise-libp2p-static-key:".utf8) + [UInt8](repeating: 7, count: 32)
        let signature = try key.sign(data)
        #expect(signature.count == 64)
        #expect(key.publicKey.isValidSignature(signature, for: data))
        #expect(!key.publicKey.isValidSignature(signature, for: data + [0]))
        #expect(!PrivateKey.generate().publicKey.isValidSignature(signature, for: data))
    }

    @Test func generatedKeysDifferAndRoundTripThroughProtobuf() throws {
        let a = PrivateKey.generate()
        let b = PrivateKey.generate()
        #expect(a.peerID != b.peerID)
        #expect(try PrivateKey(protobufEncoded: a.protobufEncoded).peerID == a.peerID)
        #expect(try PeerID(bytes: a.peerID.bytes) == a.peerID)
        #expect(try PeerID(a.peerID.description) == a.peerID)
    }
}
