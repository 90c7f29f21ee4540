import Crypto
import Foundation

#if canImport(CPunchLibcrypto)
import CPunchLibcrypto
#endif

/// ChaCha20-Poly1305 (RFC 8439, section 2.8) on caller-owned buffers: seals into and opens into
/// memory the caller provides, so a Noise frame is encrypted where it will be sent and decrypted
/// where it will be read, without the allocations and copies of swift-crypto's `ChaChaPoly`
/// (which returns every result as a fresh `Data`).
///
/// On Linux this is the system's libcrypto (OpenSSL 3); elsewhere it falls back to swift-crypto and
/// copies. Both give byte-identical results (tested against RFC 8439's vector and each other).
enum ChaChaPolyBuffers {
    static let keyLength = 32
    static let nonceLength = 12
    static let tagLength = 16

    /// Seals `plaintext` into `output`: ciphertext, then the tag. `output.count` must be
    /// `plaintext.count + tagLength`; the two may be the same memory.
    static func seal(
        key: UnsafeRawBufferPointer,
        nonce: UnsafeRawBufferPointer,
        plaintext: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws {
        try seal(key: key, nonce: nonce, plaintextCount: plaintext.count, into: output) { feed in try feed(plaintext) }
    }

    /// Seals one message whose plaintext arrives in parts: `parts` calls `feed` with each part in
    /// order, `plaintextCount` bytes in all; `output` (`plaintextCount + tagLength` bytes) receives
    /// the ciphertext, then the tag. A frame is sealed from a muxer header and payload slices
    /// without first copying them together; the result equals sealing the concatenation.
    static func seal(
        key: UnsafeRawBufferPointer,
        nonce: UnsafeRawBufferPointer,
        plaintextCount: Int,
        into output: UnsafeMutableRawBufferPointer,
        parts: (_ feed: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        precondition(key.count == keyLength && nonce.count == nonceLength, "ChaCha20-Poly1305 takes a 32-byte key and a 12-byte nonce")
        precondition(output.count == plaintextCount + tagLength, "the output holds the ciphertext and the tag")
        #if canImport(CPunchLibcrypto)
        guard plaintextCount <= Int(Int32.max) else { throw Failure.tooLong }
        guard let context = EVP_CIPHER_CTX_new() else { throw Failure.library("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }
        let key = key.bindMemory(to: UInt8.self)
        let nonce = nonce.bindMemory(to: UInt8.self)
        guard EVP_EncryptInit_ex2(context, cipher, key.baseAddress, nonce.baseAddress, nil) == 1 else {
            throw Failure.library("EVP_EncryptInit_ex2")
        }
        let out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        // The stream cipher continues across updates of any length (OpenSSL keeps the partial
        // keystream block), so sealing the parts one by one equals sealing them contiguous.
        var written = 0
        try parts { part in
            guard part.count > 0 else { return }
            precondition(written + part.count <= plaintextCount, "the parts are longer than plaintextCount")
            var count: Int32 = 0
            let input = part.baseAddress!.assumingMemoryBound(to: UInt8.self)
            guard EVP_EncryptUpdate(context, out + written, &count, input, Int32(part.count)) == 1 else {
                throw Failure.library("EVP_EncryptUpdate")
            }
            written += Int(count)
        }
        var final: Int32 = 0
        guard EVP_EncryptFinal_ex(context, out + written, &final) == 1, written + Int(final) == plaintextCount else {
            throw Failure.library("EVP_EncryptFinal_ex")
        }
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_GET_TAG, Int32(tagLength), out + plaintextCount) == 1 else {
            throw Failure.library("EVP_CTRL_AEAD_GET_TAG")
        }
        #else
        var plaintext = Data(capacity: plaintextCount)
        try parts { plaintext.append(contentsOf: $0) }
        precondition(plaintext.count == plaintextCount, "the parts do not add up to plaintextCount")
        let box = try ChaChaPoly.seal(
            plaintext, using: SymmetricKey(data: key), nonce: try ChaChaPoly.Nonce(data: nonce), authenticating: Data())
        box.ciphertext.copyBytes(to: output.bindMemory(to: UInt8.self), count: plaintextCount)
        box.tag.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: output[plaintextCount...]).bindMemory(to: UInt8.self), count: tagLength)
        #endif
    }

    /// Opens `message` (ciphertext, then the tag) into `output`, which must hold
    /// `message.count - tagLength` bytes; the two may be the same memory.
    ///
    /// - Returns: `false` when the message does not authenticate. `output` then holds garbage
    ///   that must not be used.
    static func open(
        key: UnsafeRawBufferPointer,
        nonce: UnsafeRawBufferPointer,
        message: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws -> Bool {
        precondition(key.count == keyLength && nonce.count == nonceLength, "ChaCha20-Poly1305 takes a 32-byte key and a 12-byte nonce")
        precondition(message.count >= tagLength && output.count == message.count - tagLength, "the output holds the plaintext")
        let length = message.count - tagLength
        #if canImport(CPunchLibcrypto)
        guard message.count <= Int(Int32.max) else { throw Failure.tooLong }
        guard let context = EVP_CIPHER_CTX_new() else { throw Failure.library("EVP_CIPHER_CTX_new") }
        defer { EVP_CIPHER_CTX_free(context) }
        let key = key.bindMemory(to: UInt8.self)
        let nonce = nonce.bindMemory(to: UInt8.self)
        guard EVP_DecryptInit_ex2(context, cipher, key.baseAddress, nonce.baseAddress, nil) == 1 else {
            throw Failure.library("EVP_DecryptInit_ex2")
        }
        let input = message.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var scratch: UInt8 = 0
        let out = output.baseAddress?.assumingMemoryBound(to: UInt8.self)
        var written: Int32 = 0
        if length > 0 {
            guard EVP_DecryptUpdate(context, out, &written, input, Int32(length)) == 1 else {
                throw Failure.library("EVP_DecryptUpdate")
            }
        }
        // The tag is only read; the control interface takes a mutable pointer.
        guard EVP_CIPHER_CTX_ctrl(context, EVP_CTRL_AEAD_SET_TAG, Int32(tagLength), UnsafeMutableRawPointer(mutating: input + length)) == 1 else {
            throw Failure.library("EVP_CTRL_AEAD_SET_TAG")
        }
        var final: Int32 = 0
        return withUnsafeMutablePointer(to: &scratch) { scratch in
            EVP_DecryptFinal_ex(context, out.map { $0 + Int(written) } ?? scratch, &final) == 1
        }
        #else
        do {
            let box = try ChaChaPoly.SealedBox(
                nonce: try ChaChaPoly.Nonce(data: nonce),
                ciphertext: message[..<length],
                tag: message[length...])
            let plaintext = try ChaChaPoly.open(box, using: SymmetricKey(data: key), authenticating: Data())
            plaintext.copyBytes(to: output.bindMemory(to: UInt8.self), count: length)
            return true
        } catch CryptoKitError.authenticationFailure {
            return false
        }
        #endif
    }

    enum Failure: Error, CustomStringConvertible {
        case tooLong
        case library(String)

        var description: String {
            switch self {
            case .tooLong: "a ChaCha20-Poly1305 message longer than 2^31 bytes"
            case .library(let call): "libcrypto's \(call) failed"
            }
        }
    }

    #if canImport(CPunchLibcrypto)
    /// The cipher, fetched once: OpenSSL 3 would otherwise look it up on every initialisation.
    // An EVP_CIPHER is immutable and safe to share between threads once fetched (OpenSSL's
    // crypto(7), "Performance"), so the unsafe annotation is sound.
    nonisolated(unsafe) private static let cipher: OpaquePointer? = EVP_CIPHER_fetch(nil, "ChaCha20-Poly1305", nil)
    #endif
}
