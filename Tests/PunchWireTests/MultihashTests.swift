import Testing

@testable import PunchWire

@Suite struct MultihashTests {
    static let sha256PeerID = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    /// An Ed25519 PeerID: identity multihash of a 36-byte PublicKey protobuf.
    static let ed25519PeerID = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"

    @Test func decodesSHA256PeerID() throws {
        let bytes = try Base58.decode(Self.sha256PeerID)
        let multihash = try Multihash(bytes: bytes)
        #expect(multihash.code == Multihash.sha256Code)
        #expect(multihash.digest.count == 32)
        #expect(multihash.bytes == bytes)
        #expect(multihash.description == Self.sha256PeerID)
    }

    @Test func decodesIdentityPeerID() throws {
        let bytes = try Base58.decode(Self.ed25519PeerID)
        let multihash = try Multihash(bytes: bytes)
        #expect(multihash.code == Multihash.identityCode)
        #expect(multihash.digest.count == 36)
        // PublicKey protobuf: field 1 (KeyType) = 1 (Ed25519), field 2 = 32 bytes.
        #expect(multihash.digest.prefix(4) == [0x08, 0x01, 0x12, 0x20])
        #expect(multihash.description == Self.ed25519PeerID)
    }

    @Test func encodesFromParts() throws {
        let multihash = Multihash(code: Multihash.identityCode, digest: [1, 2, 3])
        #expect(multihash.bytes == [0x00, 0x03, 1, 2, 3])
        #expect(try Multihash(bytes: multihash.bytes) == multihash)
        let empty = Multihash(code: Multihash.identityCode, digest: [])
        #expect(try Multihash(bytes: [0x00, 0x00]) == empty)
        // A code that needs a two-byte varint (sha3-256 is 0x16, blake2b-256 is 0xb220).
        let blake = Multihash(code: 0xB220, digest: [UInt8](repeating: 7, count: 32))
        #expect(blake.bytes.prefix(3) == [0xA0, 0xE4, 0x02])
        #expect(try Multihash(bytes: blake.bytes) == blake)
    }

    @Test func acceptsDigestUpToMaximum() throws {
        let longest = Multihash(code: 0x13, digest: [UInt8](repeating: 1, count: Multihash.maximumDigestLength))
        #expect(try Multihash(bytes: longest.bytes) == longest)
        #expect(throws: WireError(.tooLarge, "")) {
            try Multihash(bytes: [0x13] + Varint.encode(UInt64(Multihash.maximumDigestLength + 1)))
        }
    }

    @Test func refusesHugeDeclaredLengthBeforeReading() {
        #expect(throws: WireError(.tooLarge, "")) { try Multihash(bytes: [0x00] + Varint.encode(Varint.maximumValue)) }
    }

    @Test func refusesTruncatedInput() {
        #expect(throws: WireError(.truncated, "")) { try Multihash(bytes: [UInt8]()) }
        #expect(throws: WireError(.truncated, "")) { try Multihash(bytes: [0x12]) }
        #expect(throws: WireError(.truncated, "")) { try Multihash(bytes: [0x92]) }
        #expect(throws: WireError(.truncated, "")) { try Multihash(bytes: [0x12, 0x20, 1, 2, 3]) }
    }

    @Test func refusesTrailingBytes() throws {
        let bytes = try Base58.decode(Self.sha256PeerID)
        #expect(throws: WireError(.trailingBytes, "")) { try Multihash(bytes: bytes + [0]) }
    }

    @Test func refusesSHA256OfWrongLength() {
        #expect(throws: WireError(.malformedValue, "")) { try Multihash(bytes: [0x12, 0x02, 1, 2]) }
    }

    @Test func refusesBadVarints() {
        #expect(throws: WireError(.varintNotMinimal, "")) { try Multihash(bytes: [0x80, 0x00, 0x00]) }
    }

    @Test func decodesFromAnyCollection() throws {
        let bytes = try Base58.decode(Self.sha256PeerID)
        let slice = ([0xFF] + bytes)[1...]
        #expect(try Multihash(bytes: slice).bytes == bytes)
    }
}

@Suite struct CIDv1Tests {
    // From the libp2p peer-ids spec: the same PeerID as base58 multihash and as CIDv1.
    static let base58 = "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"
    static let cid = "bafzbeie5745rpv2m6tjyuugywy4d5ewrqgqqhfnf445he3omzpjbx5xqxe"

    @Test func encodesSpecExample() throws {
        #expect(CIDv1.encodeLibp2pKey(multihash: try Base58.decode(Self.base58)) == Self.cid)
    }

    @Test func decodesSpecExample() throws {
        #expect(try CIDv1.decodeLibp2pKey(Self.cid) == Base58.decode(Self.base58))
    }

    @Test func roundTripsIdentityPeerID() throws {
        let multihash = try Base58.decode(MultihashTests.ed25519PeerID)
        let text = CIDv1.encodeLibp2pKey(multihash: multihash)
        #expect(text.hasPrefix("bafz"))
        #expect(try CIDv1.decodeLibp2pKey(text) == multihash)
    }

    @Test func refusesOtherMultibases() {
        #expect(throws: WireError(.malformedValue, "")) { try CIDv1.decodeLibp2pKey("B" + Self.cid.dropFirst().uppercased()) }
        #expect(throws: WireError(.malformedValue, "")) { try CIDv1.decodeLibp2pKey("z" + Self.base58) }
        #expect(throws: WireError(.malformedValue, "")) { try CIDv1.decodeLibp2pKey(Self.base58) }
        #expect(throws: WireError(.malformedValue, "")) { try CIDv1.decodeLibp2pKey("") }
    }

    @Test func refusesOtherVersionsAndCodecs() throws {
        let multihash = try Base58.decode(Self.base58)
        // CIDv1 dag-pb (0x70) of the same multihash.
        #expect(throws: WireError(.malformedValue, "")) { try CIDv1.decodeLibp2pKey("b" + Base32.encode([1, 0x70] + multihash)) }
        #expect(throws: WireError(.malformedValue, "")) { try CIDv1.decodeLibp2pKey("b" + Base32.encode([2, 0x72] + multihash)) }
        #expect(throws: WireError(.truncated, "")) { try CIDv1.decodeLibp2pKey("b" + Base32.encode([1])) }
        #expect(throws: WireError(.truncated, "")) { try CIDv1.decodeLibp2pKey("b" + Base32.encode([1, 0x72])) }
        #expect(throws: WireError(.trailingBytes, "")) { try CIDv1.decodeLibp2pKey("b" + Base32.encode([1, 0x72] + multihash + [0])) }
        #expect(throws: WireError(.malformedValue, "")) { try CIDv1.decodeLibp2pKey(Self.cid + "1") }
    }
}
