import Testing

@testable import PunchWire

@Suite struct Base58Tests {
    // Vectors from the base58 IETF draft (draft-msporny-base58) and common libraries.
    static let vectors: [([UInt8], String)] = [
        ([], ""),
        ([0], "1"),
        ([0, 0, 1], "112"),
        (Array("Hello World!".utf8), "2NEpo7TZRRrLZSi2U"),
        (Array("The quick brown fox jumps over the lazy dog.".utf8),
         "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z"),
        ([0x00, 0x00, 0x28, 0x7F, 0xB4, 0xCD], "11233QC4"),
        ([0xFF], "5Q"),
        ([57], "z"),
        ([58], "21"),
    ]

    @Test func encodesVectors() {
        for (bytes, text) in Self.vectors {
            #expect(Base58.encode(bytes) == text)
        }
    }

    @Test func decodesVectors() throws {
        for (bytes, text) in Self.vectors {
            #expect(try Base58.decode(text) == bytes, "\(text)")
        }
    }

    @Test func encodeAcceptsAnyCollection() {
        #expect(Base58.encode(Array("Hello World!".utf8)[...]) == "2NEpo7TZRRrLZSi2U")
        #expect(Base58.encode("Hello World!".utf8) == "2NEpo7TZRRrLZSi2U")
    }

    @Test func decodesKnownPeerID() throws {
        let bytes = try Base58.decode("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N")
        #expect(bytes.count == 34)
        #expect(bytes.prefix(2) == [0x12, 0x20])
    }

    @Test func roundTripsAssortedLengths() throws {
        var generator = SystemRandomNumberGenerator()
        for length in 0..<80 {
            let zeros = Int.random(in: 0...3, using: &generator)
            let bytes = [UInt8](repeating: 0, count: min(zeros, length))
                + (0..<max(0, length - zeros)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(try Base58.decode(Base58.encode(bytes)) == bytes)
        }
    }

    @Test func refusesCharactersOutsideAlphabet() {
        for text in ["0", "O", "I", "l", "2NEpo7TZRRrLZSi2U ", "zQm+", "é", "\u{0}"] {
            #expect(throws: WireError(.malformedValue, "")) { try Base58.decode(text) }
        }
    }

    @Test func refusesOverlongText() throws {
        let longest = String(repeating: "z", count: Base58.maximumTextLength)
        #expect(try Base58.decode(longest).count > 0)
        #expect(throws: WireError(.tooLarge, "")) { try Base58.decode(longest + "z") }
        #expect(throws: WireError(.tooLarge, "")) { try Base58.decode(String(repeating: "1", count: 1_000_000)) }
    }
}
