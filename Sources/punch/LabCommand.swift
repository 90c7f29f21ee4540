import ArgumentParser
import Foundation
import PunchLab

extension NATMode: ExpressibleByArgument {}
extension LabRouter: ExpressibleByArgument {}
extension LabHost: ExpressibleByArgument {}

/// `punch lab`: the NAT lab, real kernel NATs in network namespaces (needs root).
struct LabCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Build real NATs of every behaviour in network namespaces, for tests and demos (Linux, root).",
        discussion: """
            The lab is seven network namespaces named PREFIX + host (default prefix "punch-"):

              inet  bridge br0, 203.0.113.0/24     the Internet
              srv   203.0.113.10, 203.0.113.11     servers (coturn, probe server)
              r1    wan 203.0.113.1, 10.0.1.1/24   router of h1 10.0.1.2, h1b 10.0.1.3
              r2    wan 203.0.113.2, 10.0.2.1/24   router of h2 10.0.2.2

            MODE is one of: port-restricted (the default), full-cone, address-restricted, \
            symmetric, port-remap. The lab stays up until `punch lab down`.

            Example session:
              punch lab up --r1 full-cone --r2 symmetric --stun
              punch lab exec h1 -- turnutils_stunclient 203.0.113.10
              punch lab mode r1 port-restricted --hairpin --delay 40 --loss 2
              punch lab status --json
              punch lab down
            """,
        subcommands: [LabUpCommand.self, LabModeCommand.self, LabExecCommand.self, LabStatusCommand.self, LabDownCommand.self]
    )
}

/// The options every `punch lab` subcommand takes.
struct LabCommonOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The lab's namespace prefix.", valueName: "prefix"))
    var prefix = "punch-"

    @Flag(name: .long, help: "Print one JSON object per line.")
    var json = false
}

/// Descriptions of a lab shared by `up`, `mode` and `status`.
enum LabReport {
    static func router(_ configuration: RouterConfiguration, _ router: LabRouter) -> [String: Any] {
        let options = configuration.options
        var object: [String: Any] = [
            "mode": configuration.mode.rawValue,
            "wan": router.wanAddress,
            "lan": router.lanSubnet,
            "hairpin": options.hairpin,
            "loss_percent": options.lossPercent,
            "delay_ms": options.delayMilliseconds,
            "jitter_ms": options.jitterMilliseconds,
            "drop_unsolicited": options.dropUnsolicited,
        ]
        if let timeout = options.udpTimeout { object["udp_timeout_s"] = timeout }
        if let timeout = options.tcpTimeout { object["tcp_timeout_s"] = timeout }
        return object
    }

    static func object(_ lab: NATLab, event: String) -> [String: Any] {
        [
            "event": event,
            "prefix": lab.prefix,
            "up": true,
            "routers": Dictionary(uniqueKeysWithValues: LabRouter.allCases.map { ($0.rawValue, router(lab.configuration(of: $0), $0)) }),
            "namespaces": Dictionary(uniqueKeysWithValues: LabHost.allCases.map { ($0.rawValue, lab.namespace($0)) }),
            "addresses": Dictionary(uniqueKeysWithValues: LabHost.allCases.map { ($0.rawValue, $0.addresses) }),
            "services": lab.services.map { service in
                ["name": service.name, "host": service.host.rawValue, "pid": Int(service.pid), "running": service.isRunning, "log": service.logFile] as [String: Any]
            },
        ]
    }

    static func routerLine(_ configuration: RouterConfiguration, _ router: LabRouter) -> String {
        let options = configuration.options
        var extras: [String] = []
        if options.hairpin { extras.append("hairpin") }
        if options.lossPercent > 0 { extras.append("loss \(options.lossPercent)%") }
        if options.delayMilliseconds > 0 || options.jitterMilliseconds > 0 {
            extras.append("delay \(options.delayMilliseconds)±\(options.jitterMilliseconds) ms")
        }
        if let timeout = options.udpTimeout { extras.append("udp timeout \(timeout) s") }
        if let timeout = options.tcpTimeout { extras.append("tcp timeout \(timeout) s") }
        if !options.dropUnsolicited { extras.append("answers unsolicited input") }
        let mode = configuration.mode.rawValue.padding(toLength: 19, withPad: " ", startingAt: 0)
        return "  \(router)   \(mode) wan \(router.wanAddress)  lan \(router.lanSubnet)" + (extras.isEmpty ? "" : "  (\(extras.joined(separator: ", ")))")
    }

    static func text(_ lab: NATLab) -> String {
        var lines = LabRouter.allCases.map { routerLine(lab.configuration(of: $0), $0) }
        lines.append("  srv  \(LabHost.srv.addresses.joined(separator: ", "))")
        lines.append("  h1   10.0.1.2   h1b 10.0.1.3   (behind r1)")
        lines.append("  h2   10.0.2.2                  (behind r2)")
        for service in lab.services {
            lines.append("  service \(service.name) in \(service.host): pid \(service.pid), \(service.isRunning ? "running" : "NOT running"), log \(service.logFile)")
        }
        return lines.joined(separator: "\n")
    }
}

/// The first SIGINT or SIGTERM a lab command received, or 0.
// nonisolated(unsafe): written only by `LabInterrupts`' signal handler with one store to a
// sig_atomic_t (async-signal-safe), read by the command after its step; nothing else touches it.
nonisolated(unsafe) private var receivedInterrupt: sig_atomic_t = 0

/// SIGINT and SIGTERM while the lab is being changed: remembered instead of obeyed, so the
/// command can finish or undo its step rather than leave half a lab behind. A handler (not
/// SIG_IGN) is installed, so the programs the lab starts still get the default handling.
struct LabInterrupts {
    init() {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber) { number in
                if receivedInterrupt == 0 { receivedInterrupt = number }
            }
        }
    }

    /// The first signal received, if any.
    var received: Int32? { receivedInterrupt == 0 ? nil : receivedInterrupt }

    /// Restores the default handling of SIGINT and SIGTERM.
    func restore() {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
