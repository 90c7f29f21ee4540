import Foundation
import Testing

/// Finds and runs the real programs the interop tests talk to: the built `punch` binary,
/// py-libp2p in the repository's `.venv`, coturn. A missing program fails the test with the
/// command that installs it; nothing is ever skipped.
enum ExternalTools {
    /// The repository root, from this file's location.
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The `punch` binary: `$PUNCH_BINARY` (set by scripts/test), else `.build/debug/punch`.
    static func punchBinary() throws -> String {
        let path = ProcessInfo.processInfo.environment["PUNCH_BINARY"]
            ?? repositoryRoot.appendingPathComponent(".build/debug/punch").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ToolMissing("the punch binary is not at \(path); run `swift build` (scripts/test does) or set PUNCH_BINARY")
        }
        return path
    }

    /// The Python with py-libp2p: `$PUNCH_PYTHON`, else `.venv/bin/python`.
    static func python() throws -> String {
        let path = ProcessInfo.processInfo.environment["PUNCH_PYTHON"]
            ?? repositoryRoot.appendingPathComponent(".venv/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ToolMissing("py-libp2p's Python is not at \(path); run scripts/test, which creates .venv with libp2p==0.8.1")
        }
        return path
    }

    /// A program from the system, such as `turnserver`.
    static func system(_ name: String, package: String) throws -> String {
        for directory in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"] {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw ToolMissing("\(name) not found; run scripts/test, which installs the Debian package \(package)")
    }

    /// The result of a finished program.
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program to completion (at most `timeout` seconds) and returns what it printed.
    static func run(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Read both pipes while the program runs, so a chatty program cannot block on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data()
        nonisolated(unsafe) var errData = Data()
        DispatchQueue.global().async(group: group) { outData = stdout.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: group) { errData = stderr.fileHandleForReading.readDataToEndOfFile() }
        if group.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            throw ToolMissing("\(executable) \(arguments.joined(separator: " ")) did not finish in \(timeout) s")
        }
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self)
        )
    }

    /// Parses the one JSON object a program printed on its last line.
    static func jsonObject(_ text: String) throws -> [String: Any] {
        let line = text.split(separator: "\n").last.map(String.init) ?? ""
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw ToolMissing("expected a JSON object, got: \(text)")
        }
        return object
    }
}

/// A required external program is missing or misbehaved; the message says how to fix it.
struct ToolMissing: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
