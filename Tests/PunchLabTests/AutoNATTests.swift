import Foundation
import PunchLab
import Testing

extension NATLabSelfTests {
    /// AutoNAT v2 with the `punch` CLI: `punch autonat-server` in `srv`, `punch autonat` behind
    /// r1 and in `srv` on the second public address.
    @Suite struct AutoNAT {
        /// Behind a port-restricted cone, h1's observed address is unreachable (the dial-back
        /// leaves from another port than the one h1 talks to, so the NAT drops it); behind a full
        /// cone the same check finds the mapping reachable. A client on the public 203.0.113.11
        /// is reachable, pays the dial data (its connection comes from .10, the address asked
        /// about is .11), and sees the dial-back come from a port other than the server's
        /// listening port.
        @Test func reachabilityBehindNATAndInPublicAndTheDialBackPort() throws {
            let punch = try ExternalProgram.punch()
            let lab = try NATLab.build(r1: .portRestricted)
            defer { lab.tearDown() }
            let serverPort = 4001
            let server = try lab.spawn(.srv, [punch, "autonat-server", "--listen", "/ip4/\(LabAddress.server)/tcp/\(serverPort)", "--json"])
            let listening = try parseJSON(try server.waitForLine(containing: #""listening""#, timeout: .seconds(20)))
            let peer = try #require(listening["peer_id"] as? String, "\(listening)")
            let serverAddress = "/ip4/\(LabAddress.server)/tcp/\(serverPort)/p2p/\(peer)"

            // h1 behind the port-restricted cone: its observed address, checked.
            let natted = try lab.run(
                .h1, [punch, "autonat", "--server", serverAddress, "--listen", "/ip4/0.0.0.0/tcp/4001", "--json"], timeout: .seconds(60))
            #expect(natted.status == 0, "punch autonat in h1 failed: \(natted.stdout) \(natted.stderr)")
            #expect(natted.lines.count == 1, "\(natted.stdout)")
            let private_ = try parseJSON(natted.lines.last ?? "")
            #expect((private_["address"] as? String)?.hasPrefix("/ip4/\(LabRouter.r1.wanAddress)/tcp/") == true, "\(private_)")
            #expect(private_["reachable"] as? Bool == false, "\(private_)")
            #expect(private_["status"] as? String == "unreachable", "\(private_)")
            #expect(private_["dial_back_from"] is NSNull, "\(private_)")

            // A public client on the second address: reachable, with dial data.
            let publicAddress = "/ip4/\(LabAddress.alternateServer)/tcp/4002"
            let open = try lab.run(
                .srv, [punch, "autonat", "--server", serverAddress, "--listen", publicAddress, "--address", publicAddress, "--json"],
                timeout: .seconds(60))
            #expect(open.status == 0, "punch autonat in srv failed: \(open.stdout) \(open.stderr)")
            let public_ = try parseJSON(open.lines.last ?? "")
            #expect(public_["address"] as? String == publicAddress, "\(public_)")
            #expect(public_["reachable"] as? Bool == true, "\(public_)")
            #expect(public_["status"] as? String == "reachable", "\(public_)")
            #expect((public_["dial_data_bytes"] as? Int ?? 0) >= 30_000, "the amplification guard asked for dial data: \(public_)")
            let from = try #require(public_["dial_back_from"] as? String, "\(public_)")
            #expect(from.hasPrefix("/ip4/\(LabAddress.server)/tcp/"), "\(from)")
            #expect(!from.hasSuffix("/tcp/\(serverPort)"), "the dial-back came from the server's listening port: \(from)")
            #expect(public_["dial_back_to"] as? String == publicAddress, "\(public_)")

            // Behind a full cone the mapping forwards any sender: reachable. (Another listening
            // port: the first run's connection to the server may still be in TIME_WAIT.)
            try lab.setMode(.r1, .fullCone)
            let cone = try lab.run(
                .h1, [punch, "autonat", "--server", serverAddress, "--listen", "/ip4/0.0.0.0/tcp/4011", "--json"], timeout: .seconds(60))
            #expect(cone.status == 0, "punch autonat in h1 (full cone) failed: \(cone.stdout) \(cone.stderr)")
            let mapped = try parseJSON(cone.lines.last ?? "")
            #expect(mapped["address"] as? String == "/ip4/\(LabRouter.r1.wanAddress)/tcp/4011", "\(mapped)")
            #expect(mapped["reachable"] as? Bool == true, "\(mapped)")
            #expect((mapped["dial_back_from"] as? String)?.hasSuffix("/tcp/\(serverPort)") == false, "\(mapped)")

            // The server's own account: three requests, every dial-back from a port not its own.
            let requests = try (0..<3).map { _ in
                try parseJSON(try server.waitForLine(containing: #""request""#, timeout: .seconds(10)))
            }
            #expect(requests.map { $0["dial_status"] as? String } == ["E_DIAL_ERROR", "OK", "OK"], "\(requests)")
            for request in requests.dropFirst() {
                let local = try #require(request["dial_back_local_addr"] as? String, "\(request)")
                #expect(!local.hasSuffix("/tcp/\(serverPort)"), "\(request)")
            }
            server.stop()
        }

        /// `punch netcheck --stun … --relay …` behind a port-restricted cone adds the TCP
        /// address the peer observes (r1's WAN address) and its AutoNAT v2 reachability
        /// (unreachable) to the STUN report, whose fields stay as they were.
        @Test func netcheckReportsTheObservedTCPAddressAndItsReachability() throws {
            let punch = try ExternalProgram.punch()
            let lab = try NATLab.build(r1: .portRestricted)
            defer { lab.tearDown() }
            try lab.startSTUN()
            let server = try lab.spawn(.srv, [punch, "autonat-server", "--listen", "/ip4/\(LabAddress.server)/tcp/4001", "--json"])
            let listening = try parseJSON(try server.waitForLine(containing: #""listening""#, timeout: .seconds(20)))
            let peer = try #require(listening["peer_id"] as? String, "\(listening)")
            let relay = "/ip4/\(LabAddress.server)/tcp/4001/p2p/\(peer)"

            let output = try lab.run(
                .h1, [punch, "netcheck", "--json", "--stun", "\(LabAddress.server):\(LabAddress.stunPort)", "--relay", relay], timeout: .seconds(90))
            #expect(output.status == 0, "punch netcheck failed: \(output.stdout) \(output.stderr)")
            #expect(output.lines.count == 1, "\(output.stdout)")
            let report = try parseJSON(output.lines.last ?? "")
            #expect(report["udp"] as? Bool == true, "\(report)")
            #expect((report["public_v4"] as? String)?.hasPrefix("\(LabRouter.r1.wanAddress):") == true, "\(report)")
            #expect((report["observed_tcp"] as? String)?.hasPrefix("/ip4/\(LabRouter.r1.wanAddress)/tcp/") == true, "\(report)")
            #expect(report["reachability"] as? String == "unreachable", "\(report)")
            let autonat = report["autonat"] as? [String: Any] ?? [:]
            #expect(autonat["status"] as? String == "unreachable", "\(report)")

            // Without --stun: the TCP fields alone, UDP not checked.
            let tcpOnly = try lab.run(.srv, [punch, "netcheck", "--json", "--relay", relay], timeout: .seconds(90))
            #expect(tcpOnly.status == 0, "\(tcpOnly.stdout) \(tcpOnly.stderr)")
            let open = try parseJSON(tcpOnly.lines.last ?? "")
            #expect(open["udp"] is NSNull, "\(open)")
            #expect(open["reachability"] as? String == "reachable", "\(open)")
            server.stop()
        }
    }
}
