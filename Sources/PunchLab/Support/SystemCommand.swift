import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one way the lab runs system programs (ip, nft, conntrack, sysctl, ...): it finds them,
/// captures their output and turns a failure into a ``LabError`` that names the command and
/// quotes its stderr.
enum SystemCommand {
    /// Where system programs are looked for, in order.
    static let searchPath = ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin", "/usr/local/bin"]

    /// The Debian package that provides each program the lab uses, for error messages.
    static let packages: [String: String] = [
        "ip": "iproute2", "ss": "iproute2", "nft": "nftables", "iptables": "iptables",
        "conntrack": "conntrack", "sysctl": "procps", "turnserver": "coturn",
        "miniupnpd": "miniupnpd-nftables", "python3": "python3",
    ]

    /// The programs every lab needs.
    static let essentialTools = ["ip", "nft", "conntrack", "sysctl"]

    /// The absolute path of a system program.
    /// - Throws: ``LabError/Code/toolMissing`` naming the package to install.
    static func locate(_ tool: String) throws -> String {
        for directory in searchPath {
            let path = "\(directory)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        let package = packages[tool] ?? tool
        throw LabError(.toolMissing, "the NAT lab needs `\(tool)`; install the Debian package \(package) (scripts/test installs it)")
    }

    /// Throws unless this is Linux, the process is root and the essential programs are there.
    static func checkPrerequisites() throws {
        #if os(Linux)
        guard geteuid() == 0 else {
            throw LabError(.notRoot, "the NAT lab needs root (network namespaces, nftables); run as root, e.g. with sudo")
        }
        for tool in essentialTools { _ = try locate(tool) }
        #else
        throw LabError(.unsupportedPlatform, "the NAT lab needs Linux (network namespaces, nftables)")
        #endif
    }

    /// What a finished program printed.
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program to completion and returns its output whatever its exit status.
    /// - Throws: ``LabError/Code/timedOut`` (after killing it) if it runs longer than `timeout`
    ///   seconds; ``LabError/Code/commandFailed`` if it cannot be started.
    static func execute(_ executable: String, _ arguments: [String], input: String? = nil, timeout: Double = 30) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let stdoutPipe = Pipe()
        let stderrPipe = Pipe()
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        // Input comes from a file, not a pipe: writing to a pipe whose reader already exited
        // would raise SIGPIPE in this process.
        let inputFile = try input.map(temporaryInputFile)
        defer { try? inputFile?.close() }
        process.standardInput = inputFile ?? FileHandle.nullDevice
        do {
            try process.runWithSignalsUnblocked()
        } catch {
            throw LabError(.commandFailed, "cannot start `\(commandLine(executable, arguments))`: \(error)")
        }
        try? stdoutPipe.fileHandleForWriting.close()
        try? stderrPipe.fileHandleForWriting.close()
        let stdout = PipeReader(stdoutPipe.fileHandleForReading)
        let stderr = PipeReader(stderrPipe.fileHandleForReading)
        let deadline = Date(timeIntervalSinceNow: timeout)
        guard stdout.waitForEnd(until: deadline), stderr.waitForEnd(until: deadline) else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw LabError(.timedOut, "`\(commandLine(executable, arguments))` did not finish in \(timeout) s")
        }
        process.waitUntilExit()
        return Result(status: process.terminationStatus, stdout: stdout.text, stderr: stderr.text)
    }

    /// Runs a system program, optionally inside a namespace, and returns its stdout.
    /// - Throws: ``LabError/Code/commandFailed`` with the command line and its stderr if it exits
    ///   with a failure status; ``LabError/Code/toolMissing``; ``LabError/Code/timedOut``.
    @discardableResult
    static func run(_ tool: String, _ arguments: [String], in namespace: String? = nil, input: String? = nil, timeout: Double = 30) throws -> String {
        let toolPath = try locate(tool)
        let (executable, fullArguments) =
            if let namespace {
                (try locate("ip"), ["netns", "exec", namespace, toolPath] + arguments)
            } else {
                (toolPath, arguments)
            }
        let result = try execute(executable, fullArguments, input: input, timeout: timeout)
        guard result.status == 0 else {
            let shown = namespace.map { "ip netns exec \($0) " } ?? ""
            let why = result.stderr.trimmingCharacters(in: .whitespacesAndNewlines)
            throw LabError(.commandFailed, "`\(shown)\(commandLine(tool, arguments))` failed (exit \(result.status)): \(why.isEmpty ? "no error output" : why)")
        }
        return result.stdout
    }

    /// An open, already unlinked file holding `text`, to be a child's stdin.
    private static func temporaryInputFile(_ text: String) throws -> FileHandle {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("punch-lab-\(UUID().uuidString).in").path
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)), let handle = FileHandle(forReadingAtPath: path) else {
            throw LabError(.commandFailed, "cannot write a temporary file at \(path)")
        }
        unlink(path)
        return handle
    }

    /// A command line as a person would type it, for messages.
    static func commandLine(_ executable: String, _ arguments: [String]) -> String {
        ([executable] + arguments).map { argument in
            argument.isEmpty || argument.contains(where: { " \"'$\\".contains($0) }) ? "'\(argument)'" : argument
        }.joined(separator: " ")
    }
}
