import Crypto
import Foundation

/// A Noise `CipherState` for ChaChaPoly: a 256-bit key and a 64-bit nonce counter
/// (Noise Protocol Framework rev 34, section 5.1).
///
/// Each encryption or decryption uses the current nonce and then increments it, so both sides
/// must process messages in the same order. A failed decryption leaves the nonce unchanged.
/// The nonce value 2^64 - 1 is reserved (section 5.1): once reached, every call throws
/// ``PunchCryptoError/Code/noiseNonceExhausted``.
public struct NoiseCipherState: Sendable {
    /// Bytes the Poly1305 tag adds to every encrypted payload (Noise rev 34, section 4.2).
    public static let tagLength = 16
    /// Bytes of a ChaChaPoly key.
    public static let keyLength = 32
    /// Bytes of a ChaChaPoly nonce: 4 zero bytes then the 8-byte little-endian counter (section 12.3).
    static let nonceLength = 12

    private var key: SymmetricKey?
    /// The nonce the next encryption or decryption uses.
    public private(set) var nonce: UInt64

    /// A cipher state without a key: it passes plaintext through (Noise `InitializeKey(empty)`).
    init() {
        self.key = nil
        self.nonce = 0
    }

    /// A cipher state with `key`, starting at `nonce` (0 except in tests of nonce exhaustion).
    init(key: SymmetricKey, nonce: UInt64 = 0) {
        self.key = key
        self.nonce = nonce
    }

    /// Whether a key is set (Noise `HasKey()`); without one, encryption is the identity.
    public var hasKey: Bool { key != nil }

    /// Encrypts `plaintext` with `associatedData` (Noise `EncryptWithAd`).
    ///
    /// - Returns: ciphertext followed by the 16-byte tag, or `plaintext` unchanged if no key is set.
    /// - Throws: ``PunchCryptoError`` `.noiseNonceExhausted`.
    public mutating func encrypt(plaintext: some DataProtocol, associatedData: some DataProtocol) throws -> [UInt8] {
        guard let key else { return Array(plaintext) }
        let box = try seal(plaintext, key: key, associatedData: associatedData)
        return Array(box.combined.dropFirst(Self.nonceLength))
    }

    /// Decrypts `ciphertext` (ciphertext followed by tag) with `associatedData` (Noise `DecryptWithAd`).
    ///
    /// - Returns: the plaintext, or `ciphertext` unchanged if no key is set.
    /// - Throws: ``PunchCryptoError`` `.noiseDecryptFailed` (nonce unchanged) or `.noiseNonceExhausted`.
    public mutating func decrypt(ciphertext: some DataProtocol, associatedData: some DataProtocol) throws -> [UInt8] {
        guard let key else { return Array(ciphertext) }
        let plaintext = try open(ciphertext, key: key, associatedData: associatedData)
        return Array(plaintext)
    }

    /// Encrypts a transport message (empty associated data) from `plaintext` into `output`:
    /// ciphertext, then the 16-byte tag. The fast path: a frame is sealed where it will be sent.
    ///
    /// - Parameters:
    ///   - plaintext: the bytes to encrypt.
    ///   - output: exactly `plaintext.count + tagLength` bytes; may be the same memory as `plaintext`.
    /// - Throws: ``PunchCryptoError`` `.noiseNonceExhausted` or `.noiseInvalidState` (no key).
    public mutating func encrypt(_ plaintext: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        try encrypt(plaintextCount: plaintext.count, into: output) { feed in try feed(plaintext) }
    }

    /// Encrypts one transport message whose plaintext arrives in parts: `parts` calls `feed` with
    /// each part in order, `plaintextCount` bytes in all (say, the slices a muxer wrote); `output`
    /// (`plaintextCount + tagLength` bytes, apart from the parts' memory) receives the ciphertext,
    /// then the tag. Byte-identical to ``encrypt(_:into:)`` of the concatenation.
    /// - Throws: ``PunchCryptoError`` `.noiseNonceExhausted`, or `.noiseInvalidState` without a key;
    ///   errors `parts` throws.
    public mutating func encrypt(
        plaintextCount: Int, into output: UnsafeMutableRawBufferPointer,
        parts: (_ feed: (UnsafeRawBufferPointer) throws -> Void) throws -> Void
    ) throws {
        guard let key else { throw Self.missingKey }
        guard nonce < UInt64.max else { throw Self.nonceExhausted }
        precondition(output.count == plaintextCount + Self.tagLength, "the output holds the ciphertext and the 16-byte tag")
        try Self.withNonceBytes(nonce) { nonceBytes in
            try key.withUnsafeBytes { keyBytes in
                do {
                    try ChaChaPolyBuffers.seal(key: keyBytes, nonce: nonceBytes, plaintextCount: plaintextCount, into: output, parts: parts)
                } catch let error as ChaChaPolyBuffers.Failure {
                    throw PunchCryptoError(.noiseInvalidState, "ChaCha20-Poly1305 refused to encrypt: \(error)")
                } catch let error as CryptoKitError {
                    throw PunchCryptoError(.noiseInvalidState, "ChaCha20-Poly1305 refused to encrypt: \(error)")
                }
            }
        }
        nonce += 1
    }

    /// Decrypts a transport message (ciphertext, then the 16-byte tag; empty associated data)
    /// into `output`. The fast path: a frame is opened where the next handler will read it.
    ///
    /// - Parameters:
    ///   - message: ciphertext followed by the tag.
    ///   - output: exactly `message.count - tagLength` bytes; may be the same memory as `message`.
    ///     After a failure it holds garbage.
    /// - Throws: ``PunchCryptoError`` `.noiseDecryptFailed` (nonce unchanged), `.noiseNonceExhausted`
    ///   or `.noiseInvalidState` (no key).
    public mutating func decrypt(_ message: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws {
        guard let key else { throw Self.missingKey }
        guard nonce < UInt64.max else { throw Self.nonceExhausted }
        guard message.count >= Self.tagLength else {
            throw PunchCryptoError(
                .noiseDecryptFailed,
                "an encrypted Noise payload has at least the \(Self.tagLength)-byte tag, got \(message.count) bytes")
        }
        precondition(output.count == message.count - Self.tagLength, "the output holds the plaintext")
        let authentic = try Self.withNonceBytes(nonce) { nonceBytes in
            try key.withUnsafeBytes { keyBytes in
                do {
                    return try ChaChaPolyBuffers.open(key: keyBytes, nonce: nonceBytes, message: message, into: output)
                } catch {
                    throw PunchCryptoError(.noiseInvalidState, "ChaCha20-Poly1305 refused to decrypt: \(error)")
                }
            }
        }
        guard authentic else { throw Self.authenticationFailure }
        nonce += 1
    }

    /// Lends the 12-byte nonce for `counter` (section 12.3) from the stack.
    private static func withNonceBytes<Result>(_ counter: UInt64, _ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try withUnsafeTemporaryAllocation(byteCount: nonceLength, alignment: 1) { nonce in
            nonce.initializeMemory(as: UInt8.self, repeating: 0)
            withUnsafeBytes(of: counter.littleEndian) { UnsafeMutableRawBufferPointer(rebasing: nonce[4..<nonceLength]).copyMemory(from: $0) }
            return try body(UnsafeRawBufferPointer(nonce))
        }
    }

    // MARK: - ChaChaPoly with the Noise nonce

    private mutating func seal(
        _ plaintext: some DataProtocol,
        key: SymmetricKey,
        associatedData: some DataProtocol
    ) throws -> ChaChaPoly.SealedBox {
        let nonce = try currentNonce()
        let box: ChaChaPoly.SealedBox
        do {
            box = try ChaChaPoly.seal(plaintext, using: key, nonce: nonce, authenticating: associatedData)
        } catch {
            // Sealing fails only for wrong key sizes, which this type never holds.
            throw PunchCryptoError(.noiseInvalidState, "ChaChaPoly refused to encrypt: \(error)")
        }
        self.nonce += 1
        return box
    }

    private mutating func open(
        _ ciphertext: some DataProtocol,
        key: SymmetricKey,
        associatedData: some DataProtocol
    ) throws -> Data {
        if let plaintext = try ciphertext.withContiguousStorageIfAvailable({ bytes in
            try open(UnsafeRawBufferPointer(bytes), key: key, associatedData: associatedData)
        }) {
            return plaintext
        }
        return try Array(ciphertext).withUnsafeBytes { try open($0, key: key, associatedData: associatedData) }
    }

    private mutating func open(
        _ ciphertext: UnsafeRawBufferPointer,
        key: SymmetricKey,
        associatedData: some DataProtocol
    ) throws -> Data {
        guard nonce < UInt64.max else { throw Self.nonceExhausted }
        guard ciphertext.count >= Self.tagLength else {
            throw PunchCryptoError(
                .noiseDecryptFailed,
                "an encrypted Noise payload has at least the \(Self.tagLength)-byte tag, got \(ciphertext.count) bytes")
        }
        // Lay out nonce || ciphertext || tag in one exactly sized buffer, the form SealedBox keeps,
        // so the ciphertext is copied once here rather than concatenated piecewise.
        var combined = Data(capacity: Self.nonceLength + ciphertext.count)
        combined.append(contentsOf: Self.nonceBytes(nonce))
        if let base = ciphertext.baseAddress {
            combined.append(base.assumingMemoryBound(to: UInt8.self), count: ciphertext.count)
        }
        let plaintext: Data
        do {
            let box = try ChaChaPoly.SealedBox(combined: combined)
            plaintext = try ChaChaPoly.open(box, using: key, authenticating: associatedData)
        } catch {
            throw Self.authenticationFailure
        }
        self.nonce += 1
        return plaintext
    }

    /// The ChaChaPoly nonce for the current counter (Noise rev 34, section 12.3).
    private func currentNonce() throws -> ChaChaPoly.Nonce {
        // Section 5.1: 2^64 - 1 is reserved for rekeying; reaching it ends the session.
        guard nonce < UInt64.max else { throw Self.nonceExhausted }
        // Twelve bytes is always a valid ChaChaPoly nonce length.
        return try! ChaChaPoly.Nonce(data: Self.nonceBytes(nonce))
    }

    /// 4 zero bytes, then the counter as 64-bit little-endian (Noise rev 34, section 12.3).
    private static func nonceBytes(_ counter: UInt64) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: nonceLength)
        for index in 0..<8 {
            bytes[4 + index] = UInt8(truncatingIfNeeded: counter >> (8 * UInt64(index)))
        }
        return bytes
    }

    private static let authenticationFailure = PunchCryptoError(
        .noiseDecryptFailed,
        "a Noise message did not authenticate (altered, truncated or from another session); close the connection")

    private static let nonceExhausted = PunchCryptoError(
        .noiseNonceExhausted, "the Noise nonce counter is exhausted (2^64 - 1 messages); open a new connection")

    private static let missingKey = PunchCryptoError(
        .noiseInvalidState, "a transport message was encrypted or decrypted with a cipher state that has no key")
}
