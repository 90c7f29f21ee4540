import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// miniupnpd in r1 maps ports for the reference clients, and the mappings carry traffic.
    @Suite struct PortMapping {
        /// Mappings made with `upnpc` (UPnP-IGD, UDP and TCP) and `natpmpc` (NAT-PMP) carry
        /// traffic from srv to h1 through r1, which drops everything unsolicited; a port nobody
        /// mapped stays closed.
        @Test func upnpcAndNatpmpcMappingsCarryInboundTrafficFromSrvToH1() throws {
            let upnpc = try ExternalProgram.system("upnpc", package: "miniupnpc")
            let natpmpc = try ExternalProgram.system("natpmpc", package: "natpmpc")
            let lab = try NATLab.build()
            defer { lab.tearDown() }
            try lab.startUPnP(router: .r1)

            // -i: the reserved external address (203.0.113.1) makes the IGD look disconnected.
            let upnp = try lab.run(.h1, [upnpc, "-i", "-r", "48000", "UDP", "48001", "TCP"])
            #expect(upnp.stdout.contains("external 203.0.113.1:48000 UDP is redirected to internal 10.0.1.2:48000"), "upnpc:\n\(upnp.stdout)\(upnp.stderr)")
            #expect(upnp.stdout.contains("external 203.0.113.1:48001 TCP is redirected to internal 10.0.1.2:48001"), "upnpc:\n\(upnp.stdout)\(upnp.stderr)")
            let pmp = try lab.run(.h1, [natpmpc, "-g", LabRouter.r1.lanAddress, "-a", "48010", "48010", "udp", "120"])
            #expect(pmp.stdout.contains("Mapped public port 48010 protocol UDP to local port 48010"), "natpmpc:\n\(pmp.stdout)\(pmp.stderr)")

            let cases: [(port: Int, tcp: Bool, mapped: Bool)] = [(48000, false, true), (48001, true, true), (48010, false, true), (48020, false, false)]
            var listeners: [(port: Int, tcp: Bool, mapped: Bool, process: LabProcess)] = []
            for item in cases {
                let listener = try lab.spawnProbe(.h1, ["listen", "--port", "\(item.port)", "--timeout", "3"] + (item.tcp ? ["--tcp"] : []))
                _ = try listener.waitForLine(containing: "listening", timeout: .seconds(10))
                listeners.append((item.port, item.tcp, item.mapped, listener))
            }
            for item in cases {
                let to = "\(LabRouter.r1.wanAddress):\(item.port)"
                _ = try lab.probe(.srv, ["send", "--to", to, "--count", "5", "--interval", "0.05", "--timeout", "1.5"] + (item.tcp ? ["--tcp"] : []))
            }
            for listener in listeners {
                let heard = try listener.process.result(timeout: .seconds(10))
                let received = heard["received"] as? Bool == true
                #expect(received == listener.mapped, "\(listener.tcp ? "TCP" : "UDP") port \(listener.port) (mapped: \(listener.mapped)): \(heard)")
                if received {
                    #expect((heard["from"] as? String)?.hasPrefix(LabAddress.server + ":") == true, "the traffic came from srv: \(heard)")
                }
            }
        }
    }
}
