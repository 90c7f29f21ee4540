import ArgumentParser
import Foundation
import PunchLab

/// `punch lab up`: builds the lab and leaves it running.
struct LabUpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Build the NAT lab and leave it up (replaces a lab with the same prefix).",
        discussion: """
            Builds the namespaces, links and NAT rules (well under a second). --stun starts \
            coturn in srv: single-address STUN on 203.0.113.10:3478 and RFC 5780 on \
            203.0.113.10/.11 ports 3490/3491. --upnp starts miniupnpd in r1 (UPnP-IGD on \
            10.0.1.1:5000, NAT-PMP/PCP on 10.0.1.1:5351; it needs and starts coturn). \
            --probe-server starts the lab's probe server on 203.0.113.10:7000. Ctrl-C during \
            `up` removes what was built.

            Examples:
              punch lab up
              punch lab up --r1 full-cone --r2 symmetric --stun --upnp
              punch lab up --json
              {"event":"up","prefix":"punch-","routers":{"r1":{"mode":"port-restricted",...},...},...}
            """
    )

    @Option(name: .long, help: ArgumentHelp("The NAT behaviour of r1.", valueName: "mode"))
    var r1: NATMode = .portRestricted

    @Option(name: .long, help: ArgumentHelp("The NAT behaviour of r2.", valueName: "mode"))
    var r2: NATMode = .portRestricted

    @Flag(name: .long, help: "Start coturn as a STUN server in srv (3478, and RFC 5780 on 3490/3491).")
    var stun = false

    @Flag(name: .long, help: "Start miniupnpd (UPnP-IGD, NAT-PMP, PCP) in r1.")
    var upnp = false

    @Flag(name: .long, help: "Start the lab's probe server in srv (203.0.113.10:7000).")
    var probeServer = false

    @OptionGroup var common: LabCommonOptions

    func run() throws {
        let interrupts = LabInterrupts()
        defer { interrupts.restore() }
        let started = Date()
        let lab: NATLab
        do {
            try NATLab.checkPrerequisites()
            let replaced = NATLab.exists(prefix: common.prefix)
            NATLab.tearDown(prefix: common.prefix)
            if replaced, !common.json {
                FileHandle.standardError.write(Data("punch: removed the lab that was up with prefix \(common.prefix)\n".utf8))
            }
            lab = try NATLab.build(prefix: common.prefix, r1: r1, r2: r2, persistent: true)
        } catch {
            throw CommandFailure.report(error, json: common.json)
        }
        do {
            if stun { try lab.startSTUN() }
            if upnp { try lab.startUPnP(router: .r1) }
            if probeServer { try lab.startProbeServer() }
        } catch {
            lab.tearDown()
            throw CommandFailure.report(error, json: common.json)
        }
        if let signal = interrupts.received {
            lab.tearDown()
            throw CommandFailure.report(LabError(.interrupted, "interrupted (signal \(signal)); the lab was removed"), json: common.json)
        }
        let seconds = (Date().timeIntervalSince(started) * 100).rounded() / 100
        if common.json {
            var object = LabReport.object(lab, event: "up")
            object["seconds"] = seconds
            if probeServer { object["probe_scripts"] = LabScripts.directory }
            JSONLine.print(object)
        } else {
            print("lab \(lab.prefix) is up (\(seconds) s)")
            print(LabReport.text(lab))
            if probeServer { print("  probes: \(LabScripts.python) \(LabScripts.probeClient) --help") }
            print("try: punch lab exec h1 -- \(stun ? "turnutils_stunclient 203.0.113.10" : "ip addr")")
        }
    }
}
