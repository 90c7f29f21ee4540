import Foundation

/// A long-running program (a listener) whose output the test reads line by line while it runs.
///
/// Always ``stop()`` it (in a `defer`): it is killed, reaped and its pipes closed.
final class BackgroundProcess: @unchecked Sendable {
    private let process = Process()
    private let stdinPipe = Pipe()
    private let lock = NSCondition()
    private var lines: [String] = []
    private var stderrText = ""
    private var finished = false
    let commandLine: String

    init(_ executable: String, _ arguments: [String]) throws {
        commandLine = ([executable] + arguments).joined(separator: " ")
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        process.standardInput = stdinPipe
        try process.run()
        let handle = stdout.fileHandleForReading
        Thread.detachNewThread { [self] in
            var pending = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    lock.lock()
                    lines.append(line)
                    lock.broadcast()
                    lock.unlock()
                }
            }
            lock.lock()
            finished = true
            lock.broadcast()
            lock.unlock()
        }
        let errorHandle = stderr.fileHandleForReading
        Thread.detachNewThread { [self] in
            let data = errorHandle.readDataToEndOfFile()
            lock.lock()
            stderrText = String(decoding: data, as: UTF8.self)
            lock.unlock()
        }
    }

    /// Every stdout line so far.
    var output: [String] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }

    /// What the program wrote to stderr (complete once it has exited).
    var errorOutput: String {
        lock.lock()
        defer { lock.unlock() }
        return stderrText
    }

    /// Waits until a stdout line parses as a JSON object that `matches`, and returns it.
    ///
    /// - Throws: ``ToolMissing`` with the output so far when `timeout` passes or the program
    ///   exits first.
    func waitForJSON(timeout: Double = 30, where matches: ([String: Any]) -> Bool) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        var index = 0
        lock.lock()
        defer { lock.unlock() }
        while true {
            while index < lines.count {
                let line = lines[index]
                index += 1
                if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], matches(object) {
                    return object
                }
            }
            if finished {
                throw ToolMissing("\(commandLine) exited before printing the expected line; stdout: \(lines), stderr: \(stderrText)")
            }
            if !lock.wait(until: deadline) {
                throw ToolMissing("\(commandLine) did not print the expected line in \(timeout) s; stdout: \(lines)")
            }
        }
    }

    /// Waits for the JSON line whose `event` is `event`.
    func waitForEvent(_ event: String, timeout: Double = 30) throws -> [String: Any] {
        try waitForJSON(timeout: timeout) { $0["event"] as? String == event }
    }

    /// Sends SIGTERM, waits up to `grace` seconds, then SIGKILL; returns the exit status.
    @discardableResult
    func stop(grace: Double = 5) -> Int32 {
        if process.isRunning {
            try? stdinPipe.fileHandleForWriting.close()
            process.terminate()
            let deadline = Date().addingTimeInterval(grace)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
