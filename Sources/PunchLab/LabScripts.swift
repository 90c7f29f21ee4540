import Foundation

/// The Python programs that ship with the lab (standard library only), and the Python that runs
/// them.
///
/// The probes check the lab's NATs with plain sockets, independently of Punch's own code:
///
/// ```swift
/// try lab.startProbeServer()
/// let result = try lab.run(.h1, [LabScripts.python, LabScripts.probeClient, "mapping"])
/// print(result.lines.last!)   // {"filtering": "address-and-port-dependent", "mapping": "endpoint-independent", ...}
/// ```
public enum LabScripts {
    /// The system Python 3 (`/usr/bin/python3` when present), which runs the lab's programs.
    public static var python: String {
        let system = "/usr/bin/python3"
        if FileManager.default.isExecutableFile(atPath: system) { return system }
        return (try? SystemCommand.locate("python3")) ?? "python3"
    }

    /// `probes/natprobe.py`: measures mapping and filtering, UDP simultaneous send, TCP
    /// simultaneous open, round trips and loss, and answers to unsolicited packets. Each
    /// subcommand prints one JSON line; `--help` lists them.
    public static var probeClient: String { path("probes/natprobe.py") }

    /// `probes/server.py`: the probe server (reflector, filtering tests, echo, UDP and TCP
    /// rendezvous) that ``NATLab/startProbeServer()`` runs in `srv`.
    public static var probeServer: String { path("probes/server.py") }

    /// `nfqueue_delay.py`: holds each packet of an NFQUEUE queue for a delay plus or minus a
    /// jitter; ``NATLab/setMode(_:_:options:)`` runs it in a router when asked for delay.
    public static var delayProgram: String { path("nfqueue_delay.py") }

    /// The directory that holds the scripts: `$PUNCH_LAB_SCRIPTS` if set, else the `Scripts`
    /// resource of this module (next to the built binary).
    public static var directory: String {
        if let override = ProcessInfo.processInfo.environment["PUNCH_LAB_SCRIPTS"], !override.isEmpty { return override }
        return Bundle.module.bundleURL.appendingPathComponent("Scripts").path
    }

    private static func path(_ name: String) -> String { directory + "/" + name }
}
