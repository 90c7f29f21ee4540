import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A program running in one of the lab's namespaces, started by ``NATLab/spawn(_:_:)``.
///
/// Its stdout is read as it arrives, line by line; ``waitForLine(matching:timeout:)`` hands the
/// lines out in order. The program runs in its own process group, and ``stop(grace:)`` ends the
/// whole group. ``NATLab/tearDown()`` ends it too, with everything else in the lab.
///
/// ```swift
/// let server = try lab.spawn(.srv, [LabScripts.python, LabScripts.probeServer])
/// _ = try server.waitForLine(containing: "ready", timeout: .seconds(5))
/// server.stop()
/// ```
public final class LabProcess: Sendable {
    /// The namespace the program runs in.
    public let host: LabHost
    /// The program and its arguments, as given to ``NATLab/spawn(_:_:)``.
    public let arguments: [String]
    /// The program's PID (in the root PID namespace); also its process group.
    public let pid: Int32

    private let process: Process
    private let stdout: PipeReader
    private let stderr: PipeReader
    /// How many stdout lines ``waitForLine(matching:timeout:)`` has handed out.
    private let consumed = Locked(0)

    init(host: LabHost, namespace: String, arguments: [String]) throws {
        guard !arguments.isEmpty else {
            throw LabError(.invalidArgument, "spawn needs a program to run in \(host)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try SystemCommand.locate("ip"))
        process.arguments = ["netns", "exec", namespace] + arguments
        let stdoutPipe = Pipe()
        let stderrPipe = Pipe()
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        process.standardInput = FileHandle.nullDevice
        do {
            try process.runWithSignalsUnblocked()
        } catch {
            throw LabError(.commandFailed, "cannot start `\(arguments.joined(separator: " "))` in \(host): \(error)")
        }
        try? stdoutPipe.fileHandleForWriting.close()
        try? stderrPipe.fileHandleForWriting.close()
        self.host = host
        self.arguments = arguments
        self.process = process
        // `ip netns exec` execs the program, so this is the program's own PID.
        self.pid = process.processIdentifier
        self.stdout = PipeReader(stdoutPipe.fileHandleForReading)
        self.stderr = PipeReader(stderrPipe.fileHandleForReading)
    }

    /// Whether the program still runs.
    public var isRunning: Bool { process.isRunning }

    /// Every complete line the program has printed on stdout so far.
    public var outputLines: [String] { stdout.allLines }

    /// Everything the program has printed on stderr so far.
    public var errorOutput: String { stderr.text }

    /// Waits for the next stdout line that matches, and returns it.
    ///
    /// Lines are handed out in order: each call looks at the lines after the one the previous
    /// call returned (lines it skips are not looked at again).
    /// - Parameters:
    ///   - predicate: says whether a line is the one wanted.
    ///   - timeout: how long to wait.
    /// - Returns: the line, without its newline.
    /// - Throws: ``LabError/Code/processExited`` if the program's stdout ends first,
    ///   ``LabError/Code/timedOut`` if the time runs out; both quote the program's stderr.
    public func waitForLine(matching predicate: (String) -> Bool, timeout: Duration) throws -> String {
        enum Outcome { case found(String), ended }
        let start = consumed.withLock { $0 }
        let outcome = stdout.wait(until: Date(timeIntervalSinceNow: timeout.seconds)) { lines, finished -> Outcome? in
            if lines.count > start, let index = lines[start...].firstIndex(where: predicate) {
                consumed.withLock { $0 = index + 1 }
                return .found(lines[index])
            }
            return finished ? .ended : nil
        }
        switch outcome {
        case .found(let line):
            return line
        case .ended:
            process.waitUntilExit()
            throw LabError(.processExited, "`\(description)` exited (status \(exitStatus)) before printing the expected line\(stderrTail)")
        case nil:
            throw LabError(.timedOut, "`\(description)` printed no expected line in \(timeout)\(stderrTail)")
        }
    }

    /// Waits for the next stdout line that contains `text`; see ``waitForLine(matching:timeout:)``.
    public func waitForLine(containing text: String, timeout: Duration) throws -> String {
        try waitForLine(matching: { $0.contains(text) }, timeout: timeout)
    }

    /// Waits for the program to exit and returns its status (128 + the signal number if a signal
    /// ended it).
    /// - Throws: ``LabError/Code/timedOut`` if it still runs after `timeout`; it keeps running.
    @discardableResult
    public func waitForExit(timeout: Duration) throws -> Int32 {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        while process.isRunning {
            if Date() > deadline {
                throw LabError(.timedOut, "`\(description)` still runs after \(timeout)")
            }
            usleep(5_000)
        }
        process.waitUntilExit()
        return exitStatus
    }

    /// The finished program's output. Call after the program exited.
    func collectOutput() -> LabOutput {
        // A background child may hold the pipes open; do not wait for it long.
        let deadline = Date(timeIntervalSinceNow: 1)
        stdout.waitForEnd(until: deadline)
        stderr.waitForEnd(until: deadline)
        return LabOutput(status: exitStatus, stdout: stdout.text, stderr: stderr.text)
    }

    /// Ends the program's process group: SIGTERM, then SIGKILL after `grace`. Does nothing if
    /// it already exited. Returns once it has exited.
    public func stop(grace: Duration = .seconds(2)) {
        guard process.isRunning else { return }
        kill(-pid, SIGTERM)
        if (try? waitForExit(timeout: grace)) != nil { return }
        kill(-pid, SIGKILL)
        _ = try? waitForExit(timeout: .seconds(5))
    }

    private var exitStatus: Int32 {
        process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    }

    private var description: String { "\(host): \(arguments.joined(separator: " "))" }

    private var stderrTail: String {
        let text = stderr.text.trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? "" : "; stderr: \(text.suffix(1500))"
    }
}

/// What a finished program printed, from ``NATLab/run(_:_:timeout:)``.
public struct LabOutput: Sendable, Hashable {
    /// The exit status (128 + the signal number if a signal ended the program).
    public var status: Int32
    /// Everything printed on stdout.
    public var stdout: String
    /// Everything printed on stderr.
    public var stderr: String

    /// The stdout lines, without empty ones.
    public var lines: [String] { stdout.split(separator: "\n").map(String.init) }

    /// Creates an output value.
    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
