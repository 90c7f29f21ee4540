#if canImport(Glibc)
import Glibc
#endif
import Testing

@testable import PunchCrypto

@Suite struct IdentityKeyFileTests {
    /// A fresh directory under /tmp, removed by the caller.
    func temporaryDirectory() throws -> String {
        var template = Array("/tmp/punch-keyfile-XXXXXX".utf8CString)
        let path = try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) })
        return String(cString: path)
    }

    func remove(_ directory: String) {
        // Test directories are shallow: at most one subdirectory level.
        for sub in ["/a/b/identity.key", "/a/b", "/a", "/identity.key", "/corrupt.key", "/open.key", "/dir.key"] {
            unlink(directory + sub)
            rmdir(directory + sub)
        }
        rmdir(directory)
    }

    @Test func createsWithMode0600AndLoadsTheSameIdentity() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/a/b/identity.key"
        let (created, wasCreated) = try IdentityKeyFile.loadOrCreate(at: path)
        #expect(wasCreated)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let (loaded, wasCreatedAgain) = try IdentityKeyFile.loadOrCreate(at: path)
        #expect(!wasCreatedAgain)
        #expect(loaded.peerID == created.peerID)
        #expect(try IdentityKeyFile.load(from: path).peerID == created.peerID)
    }

    @Test func missingFileIsATypedError() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        #expect(throws: PunchCryptoError(.keyFileMissing, "")) { try IdentityKeyFile.load(from: directory + "/identity.key") }
    }

    @Test func corruptFileIsATypedErrorAndIsNotReplaced() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/corrupt.key"
        let fd = open(path, O_WRONLY | O_CREAT, 0o600)
        _ = write(fd, "not a key", 9)
        close(fd)
        #expect(throws: PunchCryptoError(.keyFileCorrupt, "")) { try IdentityKeyFile.load(from: path) }
        #expect(throws: PunchCryptoError(.keyFileCorrupt, "")) { try IdentityKeyFile.loadOrCreate(at: path) }
        var info = stat()
        #expect(stat(path, &info) == 0 && info.st_size == 9)
    }

    @Test func fileReadableByOthersIsRefused() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/open.key"
        try IdentityKeyFile.save(PrivateKey.generate(), to: path)
        chmod(path, 0o644)
        #expect(throws: PunchCryptoError(.keyFileInsecure, "")) { try IdentityKeyFile.load(from: path) }
    }

    @Test func directoryInsteadOfFileIsUnreadable() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/dir.key"
        mkdir(path, 0o700)
        #expect(throws: PunchCryptoError(.keyFileUnreadable, "")) { try IdentityKeyFile.load(from: path) }
    }

    @Test func saveNeverOverwritesAnExistingIdentity() throws {
        let directory = try temporaryDirectory()
        defer { remove(directory) }
        let path = directory + "/identity.key"
        let first = PrivateKey.generate()
        try IdentityKeyFile.save(first, to: path)
        #expect(throws: PunchCryptoError(.keyFileUnreadable, "")) { try IdentityKeyFile.save(PrivateKey.generate(), to: path) }
        #expect(try IdentityKeyFile.load(from: path).peerID == first.peerID)
    }
}
