import Crypto
import Foundation
import Testing

@testable import PunchCrypto

/// The buffer-based ChaCha20-Poly1305 (libcrypto on Linux) against swift-crypto's `ChaChaPoly`.
@Suite struct ChaChaPolyBuffersTests {
    static let sizes = [0, 1, 15, 16, 17, 63, 64, 65, 1000, 4096, 65519]

    static func random(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8.random(in: 0...255) } }

    /// Sealing a message fed in parts (as a muxer header and payload slices) gives the bytes of
    /// swift-crypto's seal of the whole: splits at block boundaries and inside blocks, empty parts.
    @Test(arguments: [
        [0], [12, 65507], [1, 1, 1], [63, 1, 64], [12, 0, 4000, 12, 61495], [17, 33, 0, 500], [65519],
    ]) func sealsInPartsExactlyAsSwiftCryptoSealsTheWhole(partSizes: [Int]) throws {
        let key = Self.random(32)
        let nonce = Self.random(12)
        let parts = partSizes.map { Self.random($0) }
        let whole = parts.flatMap { $0 }
        let reference = try ChaChaPoly.seal(whole, using: SymmetricKey(data: key), nonce: ChaChaPoly.Nonce(data: nonce))

        var sealed = [UInt8](repeating: 0, count: whole.count + 16)
        try key.withUnsafeBytes { key in
            try nonce.withUnsafeBytes { nonce in
                try sealed.withUnsafeMutableBytes { output in
                    try ChaChaPolyBuffers.seal(key: key, nonce: nonce, plaintextCount: whole.count, into: output) { feed in
                        for part in parts {
                            try part.withUnsafeBytes { try feed($0) }
                        }
                    }
                }
            }
        }
        #expect(sealed == Array(reference.ciphertext) + Array(reference.tag))
    }

    @Test(arguments: sizes) func sealsExactlyAsSwiftCryptoAndOpensItsOutput(size: Int) throws {
        let key = Self.random(32)
        let nonce = Self.random(12)
        let plaintext = Self.random(size)
        let reference = try ChaChaPoly.seal(plaintext, using: SymmetricKey(data: key), nonce: ChaChaPoly.Nonce(data: nonce))

        var sealed = [UInt8](repeating: 0, count: size + 16)
        try key.withUnsafeBytes { key in
            try nonce.withUnsafeBytes { nonce in
                try plaintext.withUnsafeBytes { input in
                    try sealed.withUnsafeMutableBytes { try ChaChaPolyBuffers.seal(key: key, nonce: nonce, plaintext: input, into: $0) }
                }
            }
        }
        #expect(sealed == Array(reference.ciphertext) + Array(reference.tag))

        // Opened in place.
        var message = sealed
        let authentic = try key.withUnsafeBytes { key in
            try nonce.withUnsafeBytes { nonce in
                try message.withUnsafeMutableBytes { buffer in
                    try ChaChaPolyBuffers.open(
                        key: key, nonce: nonce, message: UnsafeRawBufferPointer(buffer),
                        into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<size]))
                }
            }
        }
        #expect(authentic)
        #expect(Array(message.prefix(size)) == plaintext)
    }

    @Test(arguments: [0, 17, 65519]) func everyAlteredByteFailsToOpen(size: Int) throws {
        let key = Self.random(32)
        let nonce = Self.random(12)
        let reference = try ChaChaPoly.seal(Self.random(size), using: SymmetricKey(data: key), nonce: ChaChaPoly.Nonce(data: nonce))
        let sealed = Array(reference.ciphertext) + Array(reference.tag)
        for index in [0, sealed.count / 2, sealed.count - 1] {
            var altered = sealed
            altered[index] ^= 0x80
            var output = [UInt8](repeating: 0, count: size)
            let authentic = try key.withUnsafeBytes { key in
                try nonce.withUnsafeBytes { nonce in
                    try altered.withUnsafeBytes { input in
                        try output.withUnsafeMutableBytes { try ChaChaPolyBuffers.open(key: key, nonce: nonce, message: input, into: $0) }
                    }
                }
            }
            #expect(!authentic, "byte \(index) of \(sealed.count) altered")
        }
    }
}
