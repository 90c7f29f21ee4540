import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// `punch netcheck` behind each NAT personality, against coturn's RFC 5780 server in `srv`.
    @Suite struct Netcheck {
        /// For every personality, `punch netcheck --json` in h1 reports the mapping and filtering
        /// behaviour `turnutils_natdiscovery` reports (run at the same time in h1b, behind the
        /// same router) and the mode is built to show; hairpin and port preservation match the
        /// router's configuration. One lab, the router's mode switched between personalities;
        /// hairpin alternates on and off so both answers are checked.
        @Test func netcheckAgreesWithCoturnBehindEveryPersonality() throws {
            let punch = try ExternalProgram.punch()
            let natdiscovery = try ExternalProgram.system("turnutils_natdiscovery", package: "coturn")
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startSTUN()
            let server = "\(LabAddress.server):\(LabAddress.rfc5780Port)"

            for (index, mode) in NATMode.allCases.enumerated() {
                let hairpin = index % 2 == 0
                try lab.setMode(.r1, mode, options: NATOptions(hairpin: hairpin))
                // coturn's filtering test waits out its timeouts; netcheck runs meanwhile.
                let coturn = try lab.spawn(.h1b, [natdiscovery, "-m", "-f", "-p", "\(LabAddress.rfc5780Port)", LabAddress.server])
                let output = try lab.run(.h1, [punch, "netcheck", "--json", "--stun", server], timeout: .seconds(60))
                try coturn.waitForExit(timeout: .seconds(30))
                let coturnReport = coturn.outputLines.joined(separator: "\n") + coturn.errorOutput

                #expect(output.status == 0, "\(mode): punch netcheck failed: \(output.stderr)")
                #expect(output.lines.count == 1, "\(mode): one JSON object: \(output.stdout)")
                let report = try parseJSON(output.lines.last ?? "")
                let context = "\(mode) (hairpin \(hairpin)): netcheck \(report)\ncoturn:\n\(coturnReport)"
                let coturnMapping = NATDiscoveryReport.mapping(coturnReport)
                let coturnFiltering = NATDiscoveryReport.filtering(coturnReport)
                #expect(coturnMapping != nil && coturnFiltering != nil, "coturn classified \(context)")
                #expect(report["mapping"] as? String == coturnMapping?.rawValue, "mapping as coturn: \(context)")
                #expect(report["filtering"] as? String == coturnFiltering?.rawValue, "filtering as coturn: \(context)")
                #expect(report["mapping"] as? String == mode.mapping.rawValue, "mapping as built: \(context)")
                #expect(report["filtering"] as? String == mode.filtering.rawValue, "filtering as built: \(context)")
                #expect(report["hairpin"] as? Bool == hairpin, "hairpin: \(context)")
                #expect(report["port_preserved"] as? Bool == mode.preservesPort, "port preservation: \(context)")
                #expect(report["udp"] as? Bool == true, "\(context)")
                #expect((report["public_v4"] as? String)?.hasPrefix("\(LabRouter.r1.wanAddress):") == true, "\(context)")
                #expect(report["public_v6"] is NSNull, "\(context)")
                let servers = report["servers"] as? [[String: Any]] ?? []
                #expect(servers.count == 1 && servers.first?["address"] as? String == server && servers.first?["rfc5780"] as? Bool == true,
                        "\(context)")
                #expect(servers.first?["latency_ms"] is Double, "\(context)")
                // STUN over TCP from a listening port: the reflexive TCP address a punch offers;
                // the NAT keeps the port exactly when it keeps UDP ports.
                #expect((report["public_tcp"] as? String)?.hasPrefix("\(LabRouter.r1.wanAddress):") == true, "TCP: \(context)")
                #expect(report["tcp_port_preserved"] as? Bool == mode.preservesPort, "TCP port preservation: \(context)")
                #expect(servers.first?["tcp_mapped"] as? String == report["public_tcp"] as? String, "\(context)")
            }
        }

        /// `punch netcheck` names the port-mapping protocols the gateway answers: all three of
        /// miniupnpd's behind r1, none behind r2 (which runs no gateway service).
        @Test func netcheckReportsWhichPortMappingProtocolsAnswer() throws {
            let punch = try ExternalProgram.punch()
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startUPnP(router: .r1)
            let server = "\(LabAddress.server):\(LabAddress.stunPort)"
            let withGateway = try lab.run(.h1, [punch, "netcheck", "--json", "--stun", server], timeout: .seconds(60))
            #expect(withGateway.status == 0, "\(withGateway.stderr)")
            let report = try parseJSON(withGateway.lines.last ?? "")
            let mapping = report["port_mapping"] as? [String: Any] ?? [:]
            #expect(mapping["gateway"] as? String == LabRouter.r1.lanAddress, "\(report)")
            #expect(mapping["pcp"] as? Bool == true && mapping["natpmp"] as? Bool == true && mapping["upnp"] as? Bool == true, "\(report)")
            #expect(mapping["external_address"] as? String == LabRouter.r1.wanAddress, "\(report)")

            let withoutGateway = try lab.run(.h2, [punch, "netcheck", "--json", "--stun", server], timeout: .seconds(60))
            #expect(withoutGateway.status == 0, "\(withoutGateway.stderr)")
            let none = try parseJSON(withoutGateway.lines.last ?? "")["port_mapping"] as? [String: Any] ?? [:]
            #expect(none["gateway"] as? String == LabRouter.r2.lanAddress, "\(none)")
            #expect(none["pcp"] as? Bool == false && none["natpmp"] as? Bool == false && none["upnp"] as? Bool == false, "\(none)")
            #expect(none["external_address"] is NSNull, "\(none)")
        }

        /// With 10 % loss each way on r1's WAN link, retransmission still gets every probe
        /// through: an address-restricted cone is still endpoint-independent mapping,
        /// address-dependent filtering, port preserved, no hairpin.
        @Test func netcheckIsStillRightWithTenPercentLoss() throws {
            let punch = try ExternalProgram.punch()
            let lab = try NATLab.build(r1: .addressRestricted, options: NATOptions(lossPercent: 10))
            defer { lab.tearDown() }
            try lab.startSTUN()
            let output = try lab.run(.h1, [punch, "netcheck", "--json", "--stun", "\(LabAddress.server):\(LabAddress.rfc5780Port)"], timeout: .seconds(60))
            #expect(output.status == 0, "\(output.stderr)")
            let report = try parseJSON(output.lines.last ?? "")
            #expect(report["udp"] as? Bool == true, "\(report)")
            #expect(report["mapping"] as? String == NATMode.addressRestricted.mapping.rawValue, "\(report)")
            #expect(report["filtering"] as? String == NATMode.addressRestricted.filtering.rawValue, "\(report)")
            #expect(report["port_preserved"] as? Bool == true && report["hairpin"] as? Bool == false, "\(report)")
        }
    }
}
