#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A node's identity key on disk, so its PeerID survives restarts.
///
/// The file holds the `PrivateKey` protobuf of the peer-ids spec, the format other libp2p
/// implementations store keys in. It is created with mode 0600 and refused when other users can
/// read it.
///
/// ```swift
/// let (key, created) = try IdentityKeyFile.loadOrCreate(at: "/var/lib/punch/identity.key")
/// ```
public enum IdentityKeyFile {
    /// The largest key file read; a libp2p RSA-4096 key is about 2.4 KB, an Ed25519 one 68 bytes.
    public static let maximumFileSize = 8192

    /// Loads the key at `path`.
    ///
    /// - Throws: ``PunchCryptoError`` `.keyFileMissing`, `.keyFileUnreadable`, `.keyFileInsecure`
    ///   (group or others may read it) or `.keyFileCorrupt`.
    public static func load(from path: String) throws -> PrivateKey {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT {
                throw PunchCryptoError(.keyFileMissing, "no identity key file at \(path); create one with `punch id --identity \(path)`")
            }
            throw PunchCryptoError(.keyFileUnreadable, "cannot open identity key file \(path): \(String(cString: strerror(code)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw PunchCryptoError(.keyFileUnreadable, "cannot stat identity key file \(path): \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw PunchCryptoError(.keyFileUnreadable, "identity key file \(path) is not a regular file")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw PunchCryptoError(
                .keyFileInsecure,
                "identity key file \(path) can be read by other users (mode \(String(info.st_mode & 0o777, radix: 8))); run `chmod 600 \(path)`"
            )
        }
        guard info.st_size <= maximumFileSize else {
            throw PunchCryptoError(.keyFileCorrupt, "identity key file \(path) is \(info.st_size) bytes, larger than any libp2p key")
        }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size) + 1)
        var total = 0
        while total < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + total, $0.count - total) }
            if n < 0 {
                if errno == EINTR { continue }
                throw PunchCryptoError(.keyFileUnreadable, "cannot read identity key file \(path): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            total += n
        }
        do {
            return try PrivateKey(protobufEncoded: bytes[0..<total])
        } catch {
            throw PunchCryptoError(
                .keyFileCorrupt,
                "identity key file \(path) does not hold a libp2p Ed25519 private key (\(error)); move it away to create a new identity"
            )
        }
    }

    /// Writes `key` to `path` with mode 0600, atomically, never replacing an existing file.
    ///
    /// - Throws: ``PunchCryptoError`` `.keyFileUnreadable` if the file exists or cannot be written.
    public static func save(_ key: PrivateKey, to path: String) throws {
        let temporary = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw PunchCryptoError(.keyFileUnreadable, "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        defer { unlink(temporary) }
        let bytes = key.protobufEncoded
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard written == bytes.count, synced else {
            throw PunchCryptoError(.keyFileUnreadable, "cannot write identity key file \(temporary): \(String(cString: strerror(errno)))")
        }
        // link() fails with EEXIST instead of replacing: two processes creating the same identity
        // at once end up with one file, and an existing identity is never overwritten.
        guard link(temporary, path) == 0 else {
            let code = errno
            if code == EEXIST {
                throw PunchCryptoError(.keyFileUnreadable, "identity key file \(path) already exists; refusing to overwrite it")
            }
            throw PunchCryptoError(.keyFileUnreadable, "cannot create identity key file \(path): \(String(cString: strerror(code)))")
        }
    }

    /// Loads the key at `path`, or creates a new one there if there is no file.
    ///
    /// Missing parent directories are created with mode 0700.
    /// - Returns: the key, and whether it was created now.
    /// - Throws: ``PunchCryptoError`` as ``load(from:)`` and ``save(_:to:)``.
    public static func loadOrCreate(at path: String) throws -> (key: PrivateKey, created: Bool) {
        do {
            return (try load(from: path), false)
        } catch let error as PunchCryptoError where error.code == .keyFileMissing {
            try createParentDirectories(of: path)
            let key = PrivateKey.generate()
            do {
                try save(key, to: path)
                return (key, true)
            } catch {
                // Another process created it between our load and save: use theirs.
                if access(path, F_OK) == 0 { return (try load(from: path), false) }
                throw error
            }
        }
    }

    private static func createParentDirectories(of path: String) throws {
        var components = path.split(separator: "/", omittingEmptySubsequences: false).dropLast()
        guard !components.isEmpty else { return }
        var current = path.hasPrefix("/") ? "" : "."
        if path.hasPrefix("/") { components = components.dropFirst() }
        for component in components where !component.isEmpty {
            current += "/" + component
            if mkdir(current, 0o700) != 0 && errno != EEXIST {
                throw PunchCryptoError(.keyFileUnreadable, "cannot create directory \(current): \(String(cString: strerror(errno)))")
            }
        }
    }
}
