import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// Each NAT personality does what it is meant to, measured two independent ways.
    @Suite struct Personalities {
        /// The socket probe and coturn's `turnutils_natdiscovery -m -f` both see each mode's
        /// mapping and filtering behaviour; the probe also sees whether the port is preserved.
        @Test func everyModeShowsItsMappingAndFilteringToTheSocketProbeAndToCoturn() throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startSTUN()
            try lab.startProbeServer()
            let natdiscovery = try ExternalProgram.system("turnutils_natdiscovery", package: "coturn")
            // Two modes at a time, one per router; coturn's filtering tests wait out timeouts, so
            // both routers are measured at once.
            let modes = NATMode.allCases
            for round in stride(from: 0, to: modes.count, by: 2) {
                let pair = [(LabRouter.r1, modes[round]), (LabRouter.r2, modes[(round + 1) % modes.count])]
                for (router, mode) in pair { try lab.setMode(router, mode) }
                var running: [(LabRouter, NATMode, LabProcess, LabProcess)] = []
                for (router, mode) in pair {
                    // Different hosts behind r1, so the two measurements use different mappings.
                    let probeHost: LabHost = router == .r1 ? .h1b : .h2
                    let coturnHost: LabHost = router == .r1 ? .h1 : .h2
                    let coturn = try lab.spawn(coturnHost, [natdiscovery, "-m", "-f", "-p", "\(LabAddress.rfc5780Port)", LabAddress.server])
                    let probe = try lab.spawnProbe(probeHost, ["mapping"])
                    running.append((router, mode, probe, coturn))
                }
                for (router, mode, probe, coturn) in running {
                    let measured = try probe.result()
                    #expect(measured["mapping"] as? String == mode.mapping.rawValue, "\(mode) on \(router), socket probe: \(measured)")
                    #expect(measured["filtering"] as? String == mode.filtering.rawValue, "\(mode) on \(router), socket probe: \(measured)")
                    #expect(measured["port_preserved"] as? Bool == mode.preservesPort, "\(mode) on \(router), socket probe: \(measured)")
                    if mode == .portRemap {
                        let ports = (measured["mapped"] as? [String] ?? []).compactMap { $0.split(separator: ":").last.flatMap { Int($0) } }
                        #expect(!ports.isEmpty && ports.allSatisfy { (20000...29999).contains($0) }, "port-remap maps into 20000-29999: \(measured)")
                    }
                    try coturn.waitForExit(timeout: .seconds(30))
                    let report = coturn.outputLines.joined(separator: "\n") + coturn.errorOutput
                    #expect(NATDiscoveryReport.mapping(report) == mode.mapping, "\(mode) on \(router), coturn says:\n\(report)")
                    #expect(NATDiscoveryReport.filtering(report) == mode.filtering, "\(mode) on \(router), coturn says:\n\(report)")
                }
            }
        }

        /// With hairpin on, hosts behind the same router reach each other through its public
        /// address, in every mode; with it off they do not. coturn's `-H` test agrees.
        @Test func hairpinLoopsBackOnlyWhenEnabled() throws {
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startSTUN()
            try lab.startProbeServer()
            let natdiscovery = try ExternalProgram.system("turnutils_natdiscovery", package: "coturn")
            let hairpinTest = [natdiscovery, "-H", "-p", "\(LabAddress.rfc5780Port)", LabAddress.server]
            let success = "successful hairpinning"

            for mode in NATMode.allCases {
                try lab.setMode(.r1, mode, options: NATOptions(hairpin: true))
                let (first, second) = try punch(lab)
                #expect(first["direct"] as? Bool == true && second["direct"] as? Bool == true,
                        "\(mode) with hairpin: h1 and h1b should reach each other via 203.0.113.1: \(first) \(second)")
            }
            let coturnOn = try lab.run(.h1, hairpinTest)
            #expect((coturnOn.stdout + coturnOn.stderr).contains(success), "coturn -H with hairpin on:\n\(coturnOn.stdout)")

            try lab.setMode(.r1, .portRestricted, options: NATOptions(hairpin: false))
            // coturn's failing test waits out its timeouts; the punch runs meanwhile.
            let coturnOff = try lab.spawn(.h1, hairpinTest)
            let (first, second) = try punch(lab)
            #expect(first["direct"] as? Bool == false && second["direct"] as? Bool == false,
                    "without hairpin, h1 and h1b must not reach each other via 203.0.113.1: \(first) \(second)")
            try coturnOff.waitForExit(timeout: .seconds(30))
            let reportOff = coturnOff.outputLines.joined(separator: "\n") + coturnOff.errorOutput
            #expect(!reportOff.contains(success), "coturn -H with hairpin off:\n\(reportOff)")
            #expect(reportOff.contains("UDP reflexive addr"), "coturn -H ran: \(reportOff)")
        }

        /// UDP simultaneous send between h1 and h1b, both behind r1.
        private func punch(_ lab: NATLab) throws -> (ProbeResult, ProbeResult) {
            let session = uniqueSession()
            let first = try lab.spawnProbe(.h1, ["udp-punch", "--session", session, "--role", "a", "--timeout", "1.5"])
            let second = try lab.spawnProbe(.h1b, ["udp-punch", "--session", session, "--role", "b", "--timeout", "1.5"])
            return (try first.result(), try second.result())
        }

        /// The router drops unsolicited input silently by default; asked not to, its own stack
        /// answers with ICMP port unreachable and a TCP reset (what breaks hole punching).
        @Test func unsolicitedInputIsDroppedUnlessAllowed() throws {
            let lab = try NATLab.build(options: NATOptions(dropUnsolicited: true))
            defer { lab.tearDown() }
            try lab.setMode(.r2, .portRestricted, options: NATOptions(dropUnsolicited: false))
            let arguments = ["--tries", "2", "--wait", "0.3"]
            let silent = try lab.spawnProbe(.srv, ["unsolicited", "--to", "\(LabRouter.r1.wanAddress):9"] + arguments)
            let answering = try lab.probe(.srv, ["unsolicited", "--to", "\(LabRouter.r2.wanAddress):9"] + arguments)
            let dropped = try silent.result()
            #expect(dropped["udp"] as? String == "silent", "r1 drops unsolicited UDP: \(dropped)")
            #expect(dropped["tcp"] as? String == "silent", "r1 drops unsolicited TCP: \(dropped)")
            #expect(answering["udp"] as? String == "refused", "r2 answers UDP with ICMP: \(answering)")
            #expect(answering["tcp"] as? String == "reset", "r2 answers TCP with RST: \(answering)")
        }
    }
}
