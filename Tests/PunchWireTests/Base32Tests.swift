import Testing

@testable import PunchWire

@Suite struct Base32Tests {
    // RFC 4648 section 10, lowercased and without padding, as multibase 'b' writes them.
    static let vectors: [(String, String)] = [
        ("", ""), ("f", "my"), ("fo", "mzxq"), ("foo", "mzxw6"), ("foob", "mzxw6yq"),
        ("fooba", "mzxw6ytb"), ("foobar", "mzxw6ytboi"),
    ]

    @Test func encodesRFCVectors() {
        for (plain, encoded) in Self.vectors {
            #expect(Base32.encode(Array(plain.utf8)) == encoded)
        }
    }

    @Test func decodesRFCVectorsInEitherCase() throws {
        for (plain, encoded) in Self.vectors {
            #expect(try Base32.decode(encoded) == Array(plain.utf8))
            #expect(try Base32.decode(encoded.uppercased()) == Array(plain.utf8))
        }
        #expect(try Base32.decode("MzXw6Yq") == Array("foob".utf8))
    }

    @Test func roundTripsAllByteValues() throws {
        let bytes = (0...255).map { UInt8($0) }
        for length in 0...bytes.count {
            #expect(try Base32.decode(Base32.encode(bytes.prefix(length))) == Array(bytes.prefix(length)))
        }
    }

    @Test func refusesImpossibleLengths() {
        for text in ["m", "mzx", "mzxw6y", "mzxw6ytbo"] {
            #expect(throws: WireError(.malformedValue, "")) { try Base32.decode(text) }
        }
    }

    @Test func refusesCharactersOutsideAlphabet() {
        for text in ["my======", "m1", "m8", "m0", "m ", "mé"] {
            #expect(throws: WireError(.malformedValue, "")) { try Base32.decode(text) }
        }
    }

    @Test func refusesNonZeroTrailingBits() {
        // "my" is 'f'; "mz" sets a bit after the byte.
        #expect(throws: WireError(.malformedValue, "")) { try Base32.decode("mz") }
        #expect(throws: WireError(.malformedValue, "")) { try Base32.decode("mzxr") }
        #expect(throws: WireError(.malformedValue, "")) { try Base32.decode("mzxw7") }
    }
}
