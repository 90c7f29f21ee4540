import Foundation

/// What the lab records about itself in `/run/punch-lab/PREFIX/state.json`, so that a later
/// process (the next `punch lab` command, or the next test run) can manage it or clean it up.
struct LabState: Codable, Sendable {
    /// The namespace prefix.
    var prefix: String
    /// The process that owns the lab: when it is gone, the lab is stale. `nil` for a persistent
    /// lab (`punch lab up`), which stays until it is torn down on purpose.
    var owner: ProcessIdentity?
    var created: Date
    /// Mode and options per router, keyed by the router's raw value.
    var routers: [String: RouterConfiguration]
    /// Long-running helpers (coturn, miniupnpd, delay programs, probe server) by name.
    var services: [String: ServiceRecord] = [:]
    /// Routers running miniupnpd.
    var upnpRouters: Set<String> = []

    struct ServiceRecord: Codable, Sendable {
        var host: LabHost
        var process: ProcessIdentity
        var arguments: [String]
        var log: String
    }

    /// The directory that holds every lab's state directory.
    static let root = "/run/punch-lab"

    static func directory(prefix: String) -> String { "\(root)/\(prefix)" }
    static func file(prefix: String) -> String { directory(prefix: prefix) + "/state.json" }

    /// Whether the owner has died without tearing the lab down.
    var isStale: Bool {
        guard let owner else { return false }
        return !owner.isAlive
    }

    /// Reads a lab's state; `nil` if there is none.
    /// - Throws: ``LabError/Code/stateUnreadable`` if the file exists but does not decode.
    static func load(prefix: String) throws -> LabState? {
        let path = file(prefix: prefix)
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            return try decoder.decode(LabState.self, from: data)
        } catch {
            throw LabError(.stateUnreadable, "\(path) does not decode (\(error)); remove the lab with `punch lab down --prefix \(prefix)`")
        }
    }

    /// Writes the state atomically (a reader never sees half a file).
    func save() throws {
        let directory = Self.directory(prefix: prefix)
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            try encoder.encode(self).write(to: URL(fileURLWithPath: Self.file(prefix: prefix)), options: .atomic)
        } catch {
            throw LabError(.stateUnreadable, "cannot write the lab state in \(directory): \(error)")
        }
    }
}

/// A router's NAT personality and options.
public struct RouterConfiguration: Hashable, Sendable, Codable {
    /// The NAT behaviour.
    public var mode: NATMode
    /// Hairpin, timeouts, impairment, unsolicited-input drop.
    public var options: NATOptions

    /// Creates a configuration.
    public init(mode: NATMode, options: NATOptions = NATOptions()) {
        self.mode = mode
        self.options = options
    }
}

/// A long-running helper the lab started (coturn, miniupnpd, a delay program, the probe server).
public struct LabService: Hashable, Sendable {
    /// The service's name: `stun`, `stun-rfc5780`, `upnp-r1`, `delay-r1`, `probe-server`, ...
    public var name: String
    /// The namespace it runs in.
    public var host: LabHost
    /// Its PID.
    public var pid: Int32
    /// Whether it still runs.
    public var isRunning: Bool
    /// The file its stdout and stderr go to.
    public var logFile: String
    /// The command line.
    public var arguments: [String]
}
