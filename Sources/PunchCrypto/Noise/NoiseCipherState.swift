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
    /// Free bytes a caller leaves in front of a message for ``decrypt(nonceSpaceAndMessage:_:)``.
    public static let nonceSpace = nonceLength

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

    /// Encrypts a transport message (empty associated data) and lends the ciphertext and tag to
    /// `body`, without an intermediate array: the fast path for the channel handler.
    ///
    /// - Parameters:
    ///   - plaintext: the bytes to encrypt; they are read in place.
    ///   - body: receives ciphertext followed by the 16-byte tag; the pointer is valid only inside.
    /// - Returns: what `body` returns.
    /// - Throws: ``PunchCryptoError`` `.noiseNonceExhausted` or `.noiseInvalidState` (no key), or
    ///   what `body` throws.
    public mutating func encrypt<Result>(
        _ plaintext: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) throws -> Result
    ) throws -> Result {
        guard let key else { throw Self.missingKey }
        let box = try seal(plaintext, key: key, associatedData: [UInt8]())
        // `combined` is nonce || ciphertext || tag; lend the part after the nonce.
        return try box.combined.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[Self.nonceLength...])) }
    }

    /// Decrypts a transport message that follows ``nonceSpace`` free bytes, overwriting them with
    /// the nonce, and lends the plaintext to `body`.
    ///
    /// ChaChaPoly opens `nonce || ciphertext || tag` in one piece; a caller that collects messages
    /// behind free space spares the copy that would otherwise assemble that piece.
    ///
    /// - Parameters:
    ///   - buffer: ``nonceSpace`` bytes of any content, then ciphertext and the 16-byte tag.
    ///   - body: receives the plaintext; the pointer is valid only inside.
    /// - Returns: what `body` returns.
    /// - Throws: ``PunchCryptoError`` `.noiseDecryptFailed` (nonce unchanged), `.noiseNonceExhausted`,
    ///   `.noiseInvalidState` (no key), or what `body` throws.
    public mutating func decrypt<Result>(
        nonceSpaceAndMessage buffer: UnsafeMutableRawBufferPointer,
        _ body: (UnsafeRawBufferPointer) throws -> Result
    ) throws -> Result {
        guard let key else { throw Self.missingKey }
        guard nonce < UInt64.max else { throw Self.nonceExhausted }
        guard buffer.count >= Self.nonceSpace + Self.tagLength else {
            throw PunchCryptoError(
                .noiseDecryptFailed,
                "an encrypted Noise payload has at least the \(Self.tagLength)-byte tag, got \(max(0, buffer.count - Self.nonceSpace)) bytes")
        }
        let nonceBytes = Self.nonceBytes(nonce)
        buffer.copyBytes(from: nonceBytes)
        let plaintext: Data
        do {
            let box = try ChaChaPoly.SealedBox(combined: UnsafeRawBufferPointer(buffer))
            plaintext = try ChaChaPoly.open(box, using: key, authenticating: [UInt8]())
        } catch {
            throw Self.authenticationFailure
        }
        nonce += 1
        return try plaintext.withUnsafeBytes { try body($0) }
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
