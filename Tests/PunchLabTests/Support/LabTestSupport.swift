import Foundation
import PunchLab
import Testing

/// Every NAT lab self-test, one at a time: labs must not compete for the machine's cores (the
/// loss, delay and punch measurements would suffer), and each test builds its own lab with a
/// unique prefix. Nothing is ever skipped: without root or a tool, the test fails and says why.
@Suite("NAT lab self-tests", .serialized)
struct NATLabSelfTests {}

/// A JSON object printed by one of the lab's probes.
typealias ProbeResult = [String: Any]

extension NATLab {
    /// Runs `natprobe.py SUBCOMMAND ARGUMENTS...` in a host and returns its JSON result.
    func probe(_ host: LabHost, _ arguments: [String], timeout: Duration = .seconds(30)) throws -> ProbeResult {
        let output = try run(host, [LabScripts.python, LabScripts.probeClient] + arguments, timeout: timeout)
        guard output.status == 0, let line = output.lines.last else {
            throw ProbeFailure("natprobe \(arguments.joined(separator: " ")) in \(host) failed (status \(output.status)): \(output.stdout) \(output.stderr)")
        }
        return try parseJSON(line)
    }

    /// Starts `natprobe.py SUBCOMMAND ARGUMENTS...` in a host without waiting for it.
    func spawnProbe(_ host: LabHost, _ arguments: [String]) throws -> LabProcess {
        try spawn(host, [LabScripts.python, LabScripts.probeClient] + arguments)
    }
}

extension LabProcess {
    /// Waits for the probe's result: its next JSON line that is not an event.
    func result(timeout: Duration = .seconds(30)) throws -> ProbeResult {
        let line = try waitForLine(matching: { $0.hasPrefix("{") && !$0.contains(#""event""#) }, timeout: timeout)
        return try parseJSON(line)
    }
}

func parseJSON(_ line: String) throws -> ProbeResult {
    guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? ProbeResult else {
        throw ProbeFailure("expected a JSON object, got: \(line)")
    }
    return object
}

/// A unique rendezvous session id: a reused one could hand out a stale address (natlab-notes).
func uniqueSession() -> String { UUID().uuidString }

/// A probe did not run or printed something unexpected.
struct ProbeFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Parses what coturn's `turnutils_natdiscovery -m -f` printed.
enum NATDiscoveryReport {
    static func mapping(_ output: String) -> NATBehaviour? { behaviour(output, "Mapping") }
    static func filtering(_ output: String) -> NATBehaviour? { behaviour(output, "Filtering") }

    private static func behaviour(_ output: String, _ kind: String) -> NATBehaviour? {
        if output.contains("NAT with Endpoint Independent \(kind)!") { return .endpointIndependent }
        if output.contains("NAT with Address Dependent \(kind)!") { return .addressDependent }
        if output.contains("NAT with Address and Port Dependent \(kind)!") { return .addressAndPortDependent }
        return nil
    }
}

/// Programs the self-tests run besides the lab's own: coturn's clients, miniupnpc, natpmpc,
/// the built `punch`. A missing one fails the test with the package that provides it.
enum ExternalProgram {
    static func system(_ name: String, package: String) throws -> String {
        for directory in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"] {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        throw ProbeFailure("\(name) not found; run scripts/test, which installs the Debian package \(package)")
    }

    /// The `punch` binary: `$PUNCH_BINARY` (set by scripts/test), else `.build/debug/punch`.
    static func punch() throws -> String {
        let repository = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = ProcessInfo.processInfo.environment["PUNCH_BINARY"] ?? repository.appendingPathComponent(".build/debug/punch").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ProbeFailure("the punch binary is not at \(path); run `swift build` (scripts/test does) or set PUNCH_BINARY")
        }
        return path
    }
}

extension ExternalProgram {
    /// What a finished program printed.
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program in the root namespace to completion (at most `timeout` seconds).
    static func run(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data()
        nonisolated(unsafe) var errData = Data()
        // Each variable is written by one reader and read only after group.wait.
        DispatchQueue.global().async(group: group) { outData = stdout.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: group) { errData = stderr.fileHandleForReading.readDataToEndOfFile() }
        if group.wait(timeout: .now() + timeout) == .timedOut {
            process.terminate()
            throw ProbeFailure("\(executable) \(arguments.joined(separator: " ")) did not finish in \(timeout) s")
        }
        process.waitUntilExit()
        return Output(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// Whether a process with this PID runs (a zombie counts as ended).
func processIsAlive(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].split(separator: " ").first
    return state != "Z" && state != "X"
}

/// The names of the links in the root network namespace of a type, such as "veth".
func rootLinks(type: String) throws -> Set<String> {
    let output = try ExternalProgram.run(try ExternalProgram.system("ip", package: "iproute2"), ["-o", "link", "show", "type", type])
    return Set(output.stdout.split(whereSeparator: \.isNewline).compactMap { line in
        line.split(separator: ":").dropFirst().first.map { $0.trimmingCharacters(in: .whitespaces) }
    })
}

/// A default NAT lab with `punch relay` on srv's 203.0.113.10:4001 and a scratch directory for
/// identity keys; ``tearDown()`` stops every process started through it, removes the lab and the
/// directory.
final class RelayLab {
    let lab: NATLab
    let directory: URL
    let punch: String
    /// The relay's address, ending in its `/p2p/` PeerID.
    private(set) var relayAddress = ""
    private var processes: [LabProcess] = []

    init(punch: String, name: String) throws {
        self.punch = punch
        lab = try NATLab.build()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)")
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let relay = try spawn(.srv, [
                punch, "relay", "--listen", "/ip4/203.0.113.10/tcp/4001", "--identity", identity("relay"), "--json",
            ])
            let listening = try parseJSON(relay.waitForLine(containing: #""event":"listening""#, timeout: .seconds(20)))
            relayAddress = try #require((listening["addrs"] as? [String])?.first)
        } catch {
            tearDown()
            throw error
        }
    }

    /// The path of an identity key file named `name` in the scratch directory.
    func identity(_ name: String) -> String { directory.appendingPathComponent("\(name).key").path }

    /// Starts a process in a lab host; it is stopped by ``tearDown()``.
    func spawn(_ host: LabHost, _ arguments: [String]) throws -> LabProcess {
        let process = try lab.spawn(host, arguments)
        processes.append(process)
        return process
    }

    func tearDown() {
        for process in processes { process.stop() }
        lab.tearDown()
        try? FileManager.default.removeItem(at: directory)
    }
}
