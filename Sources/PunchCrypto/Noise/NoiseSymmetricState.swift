import Crypto
import Foundation

/// A Noise `SymmetricState` with SHA-256 (Noise Protocol Framework rev 34, section 5.2): the
/// chaining key, the handshake hash, and the cipher state that encrypts handshake payloads.
struct NoiseSymmetricState: Sendable {
    /// Bytes of a SHA-256 output (`HASHLEN`).
    static let hashLength = 32

    private(set) var cipher: NoiseCipherState
    private var chainingKey: SymmetricKey
    /// The handshake hash `h`: a digest of everything sent and received so far.
    private(set) var handshakeHash: [UInt8]

    /// `InitializeSymmetric(protocol_name)`.
    init(protocolName: String) {
        let name = Array(protocolName.utf8)
        // Section 5.2: a name of at most HASHLEN bytes is zero-padded, a longer one hashed.
        if name.count <= Self.hashLength {
            handshakeHash = name + [UInt8](repeating: 0, count: Self.hashLength - name.count)
        } else {
            handshakeHash = Array(SHA256.hash(data: name))
        }
        chainingKey = SymmetricKey(data: handshakeHash)
        cipher = NoiseCipherState()
    }

    /// `MixKey(input_key_material)`: derives a new chaining key and cipher key.
    mutating func mixKey(_ inputKeyMaterial: some ContiguousBytes) {
        let (nextChainingKey, cipherKey) = Self.hkdf(chainingKey: chainingKey, inputKeyMaterial: inputKeyMaterial)
        chainingKey = SymmetricKey(data: nextChainingKey)
        // HASHLEN is 32, the ChaChaPoly key length, so no truncation is needed (section 5.2).
        cipher = NoiseCipherState(key: SymmetricKey(data: cipherKey))
    }

    /// `MixHash(data)`: `h = SHA256(h || data)`.
    mutating func mixHash(_ data: some DataProtocol) {
        var hasher = SHA256()
        hasher.update(data: handshakeHash)
        hasher.update(data: data)
        handshakeHash = Array(hasher.finalize())
    }

    /// `EncryptAndHash(plaintext)`: encrypts with `h` as associated data, then mixes the ciphertext.
    mutating func encryptAndHash(_ plaintext: some DataProtocol) throws -> [UInt8] {
        let ciphertext = try cipher.encrypt(plaintext: plaintext, associatedData: handshakeHash)
        mixHash(ciphertext)
        return ciphertext
    }

    /// `DecryptAndHash(ciphertext)`: decrypts with `h` as associated data, then mixes the ciphertext.
    mutating func decryptAndHash(_ ciphertext: some DataProtocol) throws -> [UInt8] {
        let plaintext = try cipher.decrypt(ciphertext: ciphertext, associatedData: handshakeHash)
        mixHash(ciphertext)
        return plaintext
    }

    /// `Split()`: the two transport cipher states, initiator-to-responder first.
    func split() -> (NoiseCipherState, NoiseCipherState) {
        let (first, second) = Self.hkdf(chainingKey: chainingKey, inputKeyMaterial: [UInt8]())
        return (NoiseCipherState(key: SymmetricKey(data: first)), NoiseCipherState(key: SymmetricKey(data: second)))
    }

    /// Noise's `HKDF(chaining_key, input_key_material, 2)` with HMAC-SHA256 (section 4.3): the
    /// RFC 5869 extract step with the chaining key as salt, then two expand blocks with empty info.
    static func hkdf(
        chainingKey: SymmetricKey,
        inputKeyMaterial: some ContiguousBytes
    ) -> ([UInt8], [UInt8]) {
        let tempKey = inputKeyMaterial.withUnsafeBytes { ikm in
            SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: ikm, using: chainingKey))
        }
        let output1 = Array(HMAC<SHA256>.authenticationCode(for: [0x01], using: tempKey))
        let output2 = Array(HMAC<SHA256>.authenticationCode(for: output1 + [0x02], using: tempKey))
        return (output1, output2)
    }
}
