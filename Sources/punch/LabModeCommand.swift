import ArgumentParser
import Foundation
import PunchLab

/// `punch lab mode`: changes a router's NAT behaviour and impairment.
struct LabModeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mode",
        abstract: "Change a router's NAT behaviour and options (and forget its current mappings).",
        discussion: """
            Every option is set by each call: an option not given goes back to its default \
            (no hairpin, no loss, no delay, kernel timeouts, unsolicited input dropped). \
            --loss drops that percentage of packets in each direction on the router's WAN \
            link; --delay and --jitter hold each packet delay ± jitter ms in each direction, so \
            a round trip through the router grows by twice the delay.

            Examples:
              punch lab mode r1 symmetric
              punch lab mode r2 full-cone --hairpin --udp-timeout 10
              punch lab mode r1 port-restricted --loss 10 --delay 50 --jitter 10 --json
              {"event":"mode","router":"r1","routers":{"r1":{"delay_ms":50,...},...},...}
            """
    )

    @Argument(help: ArgumentHelp("The router: r1 or r2.", valueName: "router"))
    var router: LabRouter

    @Argument(help: ArgumentHelp("port-restricted, full-cone, address-restricted, symmetric or port-remap.", valueName: "mode"))
    var mode: NATMode

    @Flag(name: .long, help: "Let hosts reach each other (and themselves) through the router's public address.")
    var hairpin = false

    @Option(name: .long, help: ArgumentHelp("Percent of packets lost in each direction (0-100).", valueName: "percent"))
    var loss = 0

    @Option(name: .long, help: ArgumentHelp("Milliseconds each packet waits in each direction.", valueName: "ms"))
    var delay = 0

    @Option(name: .long, help: ArgumentHelp("Milliseconds the delay varies by, either way.", valueName: "ms"))
    var jitter = 0

    @Option(name: .customLong("udp-timeout"), help: ArgumentHelp("Seconds an idle UDP mapping lives.", valueName: "seconds"))
    var udpTimeout: Int?

    @Option(name: .customLong("tcp-timeout"), help: ArgumentHelp("Seconds an idle TCP mapping lives.", valueName: "seconds"))
    var tcpTimeout: Int?

    @Flag(name: .customLong("allow-unsolicited"), help: "Let the router answer unsolicited packets (ICMP, RST) instead of dropping them.")
    var allowUnsolicited = false

    @OptionGroup var common: LabCommonOptions

    func run() throws {
        let interrupts = LabInterrupts()
        defer { interrupts.restore() }
        let options = NATOptions(
            hairpin: hairpin, udpTimeout: udpTimeout, tcpTimeout: tcpTimeout, lossPercent: loss,
            delayMilliseconds: delay, jitterMilliseconds: jitter, dropUnsolicited: !allowUnsolicited)
        let lab: NATLab
        do {
            lab = try NATLab.attach(prefix: common.prefix)
            try lab.setMode(router, mode, options: options)
        } catch {
            throw CommandFailure.report(error, json: common.json)
        }
        if common.json {
            var object = LabReport.object(lab, event: "mode")
            object["router"] = router.rawValue
            JSONLine.print(object)
        } else {
            print(LabReport.routerLine(lab.configuration(of: router), router).trimmingCharacters(in: .whitespaces))
        }
    }
}
